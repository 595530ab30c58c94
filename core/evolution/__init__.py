"""AlphaEvolve-style code evolution: archive, descriptors, mutators and the iteration loop."""

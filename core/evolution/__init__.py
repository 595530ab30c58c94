"""Code evolution: MAP-Elites archives of git commits, their descriptors, and the iteration loop."""

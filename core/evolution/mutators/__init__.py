"""Mutators: what turns a parent's code into a candidate (params, command, llm); see base.py."""

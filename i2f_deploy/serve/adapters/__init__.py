"""Thin faces of the serving core for annotation tools, each at the paths its tool calls."""

"""Containment agent: plan, apply, verify and undo containment actions; audit everything."""
__version__ = "0.1.0"

"""Connectors: one module per kind of target, all implementing connectors.base.Connector."""

"""pilothouse: inference-aware routing, deployment and governance for open models."""

__version__ = "0.1.0"

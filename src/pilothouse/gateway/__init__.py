"""The standalone OpenAI-compatible gateway (data plane)."""

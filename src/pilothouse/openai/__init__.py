"""OpenAI wire format: request parsing for routing, error bodies, SSE helpers. No I/O."""

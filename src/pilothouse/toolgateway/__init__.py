"""The MCP tool gateway: every tool call an agent makes passes identity, policy, pinning,
taint, approval, budget and audit (docs/toolgateway.md)."""

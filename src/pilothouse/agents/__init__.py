"""Governed agents: the runtime loop, durable runs, and how agents are served (docs/agents.md).

Agents call the gateway (OpenAI chat completions) and the tool gateway (MCP) over their public
protocols, with the agent's own identity, never their internals.
"""

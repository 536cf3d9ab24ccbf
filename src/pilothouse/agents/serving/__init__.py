"""Agents served as services: the OpenAI Responses API (``/v1/responses``, the agent as the
model) and A2A servers (one Agent Card per agent), over the :class:`AgentRunner` seam only.

:func:`pilothouse.agents.serving.app.create_agent_app` builds the ASGI app;
``pilothouse agent serve`` (:mod:`.cli`) runs it for the agents of a Fleet. See
docs/agents-kubernetes.md for how Kubernetes runs it.
"""

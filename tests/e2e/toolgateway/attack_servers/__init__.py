"""Malicious (and a few honest) MCP servers for the tool gateway's attack suite.

Each module builds one server with the official SDK's ``MCPServer`` and runs it over stdio
(``python -m tests.e2e.toolgateway.attack_servers.NAME``) or, with ``--http``, over
streamable HTTP on a free loopback port. Every tool call a server receives is appended to
the JSON-lines file ``$RECORD``: that file, not the gateway's word, is how a test measures
whether an attack reached its target.
"""

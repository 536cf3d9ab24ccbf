"""Governance for model traffic: identities and keys, token rate limits, budgets.

Pure, clock-injected cores (time is always passed in as ``now``), used on the one request
path: a request's limits and budget are **reserved before** any engine work, from the most
it can cost, and **settled after** from what it actually used, so concurrent requests can
never together exceed a limit (the failure of routers that check after the fact). Stores
(SQLite/PostgreSQL, Redis for several gateway replicas) and the wiring into the request
pipeline build on these; see issue #12.
"""

"""Fakes shipped with pilothouse so users can test their own integrations without a cluster.

- :mod:`pilothouse.testing.fake_transport`: :class:`FakeTransport`, engines scripted per
  address (answers, failures before the first byte, broken or stalled streams) for code
  that calls a :class:`pilothouse.transport.Transport`.
- :mod:`pilothouse.testing.fake_kube`: an in-process fake of the Kubernetes API (discovery,
  list/watch, server-side apply, delete).
- :mod:`pilothouse.testing.kube_objects`: Pod and InferencePool JSON builders for it.
- :mod:`pilothouse.testing.fake_ledger_sink`: :class:`FakeLedgerSink`, an in-memory store
  for the usage ledger with switchable outages, for code built on
  :class:`pilothouse.governance.ledger.Ledger`.
- :mod:`pilothouse.testing.jwt_issuer`: :class:`JwtIssuer`, a key pair, its JWKS file and
  tokens with chosen claims (also ``python -m pilothouse.testing.jwt_issuer``).
- :mod:`pilothouse.testing.fake_tool_store`: :class:`FakeToolStore` and
  :class:`FakeAuditLog`, in-memory pins, approvals and audit for the tool gateway's rules;
  :mod:`pilothouse.testing.permit_all_guard`: :class:`PermitAllGuard`, a
  :class:`~pilothouse.toolgateway.guard.ToolGuard` that allows everything and records it.
- :mod:`pilothouse.testing.postgres` and :mod:`pilothouse.testing.redis_server`: throwaway
  PostgreSQL and Redis servers on loopback (Debian's binaries), for store tests.
"""

from pilothouse.testing.fake_transport import (
    Answer,
    Fail,
    FakeResponse,
    FakeTransport,
    Hang,
    SentRequest,
    Step,
)

__all__ = ["Answer", "Fail", "FakeResponse", "FakeTransport", "Hang", "SentRequest", "Step"]

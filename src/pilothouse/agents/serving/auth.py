"""Who may call an agent: a bearer key the gateway's governance would accept.

The serving app takes an :class:`Authenticate` callable and knows nothing else about keys:
the CLI wires it to the fleet's governance (:func:`governor_authenticate`), to the gateway's
static ``api_key`` (:func:`static_key`), or, for a fleet with neither, to
:func:`allow_anyone` (the gateway itself accepts anyone then). The Agent Card and ``/health``
stay public: A2A clients read the card before they know how to authenticate.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from pilothouse.errors import RequestError, Unauthorized
from pilothouse.governance.governor import Governor
from pilothouse.governance.requests import Credentials
from pilothouse.openai.errors import error_from_exception

CARD_SUFFIX = "/.well-known/agent-card.json"
PUBLIC_PATHS = frozenset({"/health"})


class Authenticate(Protocol):
    """The caller behind a bearer token (``None``: no ``Authorization`` header), as a name for
    logs; raises :class:`~pilothouse.errors.Unauthorized` (401) or
    :class:`~pilothouse.errors.Forbidden` (403)."""

    def __call__(self, bearer: str | None) -> str: ...


def allow_anyone(bearer: str | None) -> str:
    """For a fleet whose gateway checks no key: every caller is accepted."""
    return "anonymous"


def static_key(expected: str) -> Authenticate:
    """The gateway's single ``api_key``."""

    def check(bearer: str | None) -> str:
        if bearer is None or not hmac.compare_digest(bearer.encode(), expected.encode()):
            raise Unauthorized("invalid API key", code="invalid_api_key")
        return "api-key"

    return check


def governor_authenticate(governor: Governor) -> Authenticate:
    """The fleet's governance: the same keys, revocations and JWTs as the gateway."""

    def check(bearer: str | None) -> str:
        return governor.authenticate(Credentials(bearer=bearer)).subject

    return check


def bearer_of(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class BearerAuth:
    """ASGI middleware: every HTTP request but the public ones needs an accepted bearer key;
    refusals are OpenAI error bodies (the A2A client reads the status)."""

    def __init__(self, app: ASGIApp, authenticate: Authenticate) -> None:
        self.app = app
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.endswith(CARD_SUFFIX):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        raw = headers.get(b"authorization")
        try:
            caller = self.authenticate(bearer_of(raw.decode("latin-1") if raw else None))
        except RequestError as exc:
            status, body, extra = error_from_exception(exc)
            await _reply(send, status, body, extra)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


async def _reply(send: Send, status: int, body: bytes, extra: dict[str, str]) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""Everything one gateway instance needs, built once by the app factory and passed around."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field

import aiohttp

from pilothouse.clock import Clock
from pilothouse.config.fleet import GatewaySpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import Unauthorized
from pilothouse.gateway.metrics import GatewayMetrics
from pilothouse.routing import Router
from pilothouse.scheduling.scheduler import Scheduler


@dataclass(slots=True)
class GatewayContext:
    settings: GatewaySpec
    pool: EndpointPool
    scheduler: Scheduler
    metrics: GatewayMetrics
    clock: Clock
    access_log: logging.Logger = field(
        default_factory=lambda: logging.getLogger("pilothouse.access")
    )
    session: aiohttp.ClientSession | None = None
    router: Router = field(init=False)

    def __post_init__(self) -> None:
        self.router = Router(self.pool, self.scheduler, self.metrics.decision.observe)

    def upstream(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise RuntimeError("the gateway's upstream session is not started")
        return self.session

    def check_api_key(self, authorization: bytes | None) -> None:
        """Require ``Authorization: Bearer <key>`` when a key is configured (constant time)."""
        expected = self.settings.api_key
        if expected is None:
            return
        supplied = b""
        if authorization and authorization[:7].lower() == b"bearer ":
            supplied = authorization[7:].strip()
        if not hmac.compare_digest(supplied, expected.encode()):
            raise Unauthorized(
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )

"""Mounting the web console (:mod:`pilothouse.ui`) on the gateway at ``/ui``.

The console is served when ``gateway.ui.enabled`` and an admin credential is set; only then
does the gateway keep a recent-decisions ring (the routing pipeline's ``on_scheduled``
hook and one slot written per request). Without a credential ``/ui`` says how to set one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from starlette.routing import BaseRoute

from pilothouse.config.fleet import GatewaySpec
from pilothouse.gateway.admin_guard import check_browser
from pilothouse.gateway.context import GatewayContext
from pilothouse.ui.app import console_routes
from pilothouse.ui.auth import Sessions
from pilothouse.ui.decisions import DecisionLog
from pilothouse.ui.sources import ConsoleSources


def console_credential(settings: GatewaySpec) -> str | None:
    """The credential the console's login takes (None: the console is not served)."""
    if not settings.ui.enabled:
        return None
    return settings.admin.api_key or settings.api_key


def mount_console(ctx: GatewayContext) -> list[BaseRoute]:
    """The ``/ui`` routes, recording decisions into ``ctx.decisions`` when served."""
    settings = ctx.settings
    if not settings.ui.enabled:
        return []
    credential = console_credential(settings)
    sessions = None
    decisions = DecisionLog(settings.ui.decisions)
    if credential is not None:
        sessions = Sessions(credential, settings.ui.session_ttl_s, time.time)
        ctx.decisions = decisions
        ctx.pipeline.on_scheduled = decisions.scheduled
    reports = settings.ui.reports_dir
    sources = ConsoleSources(
        pool=ctx.pool,
        decisions=decisions,
        governance=lambda: ctx.governance,
        control=lambda: _control(ctx),
        reports_dir=Path(reports).expanduser() if reports else None,
    )

    def guard(headers: Mapping[str, str], scheme: str) -> str | None:
        return check_browser(settings, headers, scheme)

    return console_routes(sources, sessions, guard)


def _control(ctx: GatewayContext) -> Mapping[str, object] | None:
    status = ctx.control_status
    return status() if status is not None else None

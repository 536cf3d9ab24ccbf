"""``pilothouse bench``: benchmarks. Each kind of benchmark is one subcommand of the group,
in a package of its own (``decision``, ``epp``, ``lag``, ``live``, ``overhead``, ``sim``,
``toolgateway``);
shared pieces (workloads, the load generator, the mock upstream, reports) stay here."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
from rich.console import Console

from pilothouse.cli_lazy import LazyGroup
from pilothouse.errors import PilothouseError

T = TypeVar("T")


@click.group(
    cls=LazyGroup,
    lazy={
        "sim": "pilothouse.bench.sim.cli:sim_command",
        "epp": "pilothouse.bench.epp.run:epp_bench_command",
        "live": "pilothouse.bench.live.cli:live_command",
        "decision": "pilothouse.bench.decision.cli:decision_command",
        "gateway-lag": "pilothouse.bench.lag.cli:gateway_lag_command",
        "overhead": "pilothouse.bench.overhead.cli:overhead",
        "transport": "pilothouse.bench.overhead.transport:transport_command",
        "toolgateway": "pilothouse.bench.toolgateway.cli:toolgateway_command",
    },
    context_settings={"help_option_names": ["-h", "--help"]},
)
def bench() -> None:
    """Benchmarks of pilothouse itself and of the fleets it runs."""


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop; SIGTERM cancels it so cleanup (child processes) still runs."""
    terminated: list[bool] = []

    async def guarded() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def on_sigterm() -> None:
            terminated.append(True)
            if task is not None:
                task.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            return await coro
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        return runner(guarded())
    except PilothouseError as exc:
        raise click.ClickException(str(exc)) from exc
    except asyncio.CancelledError:
        if not terminated:
            raise
        click.echo("terminated; the mock upstream and the gateway were stopped", err=True)
        raise SystemExit(128 + signal.SIGTERM) from None


def finish_report(
    console: Console, document: object, json_path: Path | None, passed: bool, fail_on_miss: bool
) -> None:
    """The end every judged benchmark shares: write the JSON (when asked for), then exit 1
    on a miss with ``--fail-on-miss``."""
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        console.print(f"wrote {json_path}")
    if fail_on_miss and not passed:
        raise SystemExit(1)

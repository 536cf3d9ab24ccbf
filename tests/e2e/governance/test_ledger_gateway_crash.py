"""``kill -9`` a governed gateway mid-load: after recovery the ledger holds what was served.

Issue #12's acceptance, with real processes: a simulator replica, a gateway process
(``pilothouse gateway -f fleet.yaml``, SQLite store, fixed port so the restarted gateway
takes the killed one's ledger directory) and 16 client workers sending streamed and
non-streamed chat completions, each with its own ``x-request-id``. The gateway is killed
with SIGKILL under load, started again with the same command while the load goes on, and
stopped with SIGTERM (still under load: it drains, and the ledger flushes on close).

The comparison, request id by request id:

- every **served** request (its response completed, see ``load_client``) is in the ledger
  with exactly the prompt and completion tokens its client received;
- the ledger holds nothing else, with one exception the design makes possible and the
  test names instead of hiding: the ledger entry is written *before the last bytes of an
  answer leave the gateway*, so a request whose connection the kill cut in that window is
  charged (the engine did the work) but not served. Such entries may only be requests
  that were in flight at the kill and whose connection broke; their number is printed,
  and for a cut stream whose usage chunk had arrived, its tokens must match it;
- hence the ledger's totals equal the served totals exactly when no answer was cut in
  that window (the usual case: it is microseconds wide), and exceed them by exactly the
  named entries otherwise.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

from pilothouse.governance import ledger_wal as wal
from tests.e2e.engine_procs import free_port
from tests.e2e.governance.gateway_procs import (
    MODEL,
    ledger_rows,
    make_tenant,
    sim_replica,
    write_fleet,
)
from tests.e2e.governance.load_client import Load
from tests.e2e.procs import start_until_ready, stop

pytestmark = pytest.mark.e2e

WORKERS = 16
SERVED_BEFORE_KILL = 300
SERVED_AFTER_RESTART = 300


def _sum(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """(prompt, completion) totals."""
    listed = list(pairs)
    return sum(p for p, _ in listed), sum(c for _, c in listed)


async def test_ledger_equals_served_usage_after_gateway_kill_9_mid_load(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    store = f"sqlite:///{state / 'governance.db'}"
    key = make_tenant(store)
    port = free_port()
    governance = {
        "state_dir": str(state),
        # Batches leave for the store once a second: the kill finds entries only in the log.
        "ledger": {"flush_interval_s": 1.0, "batch_size": 500},
    }
    procs: list[subprocess.Popen[str]] = []
    with sim_replica(tmp_path / "sim.log") as endpoint:
        fleet = write_fleet(tmp_path / "fleet.yaml", endpoint, port, governance)
        args = ["gateway", "-f", str(fleet)]
        try:
            first, url = await asyncio.to_thread(start_until_ready, args, tmp_path / "gw-1.log")
            procs.append(first)
            load = Load(url + "/chat/completions", key, MODEL, WORKERS, phase="first")
            load.start()
            try:
                await load.wait_served(SERVED_BEFORE_KILL)
                first.send_signal(signal.SIGKILL)
                load.phase = "down"  # requests started from here on never reached `first`
                await asyncio.to_thread(first.wait, 30)
                in_store_at_kill = len(ledger_rows(store))

                second, again = await asyncio.to_thread(
                    start_until_ready, args, tmp_path / "gw-2.log"
                )
                procs.append(second)
                assert again == url
                load.phase = "second"
                await load.wait_served(SERVED_AFTER_RESTART)
                load.phase = "stopping"  # SIGTERM under load: drain, flush on close
                code = await asyncio.to_thread(stop, second, signal.SIGTERM, 60)
                assert code == 0, (tmp_path / "gw-2.log").read_text()[-3000:]
                load.phase = "after"
            finally:
                await load.stop()
        finally:
            for proc in procs:
                stop(proc, signal.SIGKILL)

    served = load.served()
    rows = ledger_rows(store)
    served_first = load.of("served", "first")
    in_flight = {r.request_id: r for r in load.of("cut", "first")}
    extra = {rid: rows[rid] for rid in rows.keys() - served.keys()}
    print(
        f"\nrequests: {load.summary()}"
        f"\nserved before the kill: {len(served_first)}, of which in the store at the kill:"
        f" {in_store_at_kill} (the rest only in the killed gateway's log)"
        f"\nin flight at the kill (connection cut): {len(in_flight)}"
        f"\nledger: {len(rows)} entries {_sum(rows.values())}; served: {len(served)}"
        f" {_sum(served.values())}; charged but cut by the kill: {len(extra)}"
    )

    assert not load.of("broken"), load.of("broken")
    missing = sorted(served.keys() - rows.keys())
    assert not missing, f"served but not in the ledger: {missing[:10]}"
    wrong = {rid: (rows[rid], tokens) for rid, tokens in served.items() if rows[rid] != tokens}
    assert not wrong, f"ledger tokens differ from the served usage: {wrong}"
    # Only requests cut by the kill may be charged without being served (see the docstring).
    assert extra.keys() <= in_flight.keys(), sorted(extra.keys() - in_flight.keys())[:10]
    for rid, tokens in extra.items():
        cut = in_flight[rid]
        print(f"charged, cut by the kill: {rid} stream={cut.stream} ledger={tokens}")
        if cut.saw_usage:
            assert tokens == cut.tokens
    assert _sum(rows.values()) == _sum([*served.values(), *extra.values()])
    if not extra:
        assert _sum(rows.values()) == _sum(served.values())  # the acceptance, exactly

    # The restarted gateway took the killed one's directory, replayed it, and left nothing.
    directories = sorted(p.name for p in (state / "ledger").iterdir())
    assert directories == [f"gateway-{port}"]
    assert wal.list_segments(state / "ledger" / directories[0]) == []

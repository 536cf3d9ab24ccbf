"""`bench overhead --peer`: the relative verdicts and the JSON beside the gateway's."""

from __future__ import annotations

import pytest

from pilothouse.bench.overhead.peer import judge_peer
from pilothouse.bench.overhead.results import LevelResult, TargetStats


def _stats(p99_ms: float, cpu: dict[str, float]) -> TargetStats:
    return TargetStats(
        requests=100, errors=0, window_s=1.0, rps=100.0, p50_ms=p99_ms / 2, p90_ms=p99_ms,
        p99_ms=p99_ms, mean_ms=p99_ms / 2, max_ms=p99_ms, cpu_ms_per_request=cpu,
        other_load_cores=0.0, first_error=None,
    )  # fmt: skip


def _level(conc: int, gateway_cpu: float, peer_cpu: float, gw_p99: float, peer_p99: float):  # type: ignore[no-untyped-def]
    return LevelResult(
        stream=False,
        concurrency=conc,
        direct=_stats(1.0, {}),
        gateway=_stats(gw_p99, {"gateway": gateway_cpu}),
        peer=_stats(peer_p99, {"peer": peer_cpu}),
    )


@pytest.mark.parametrize(
    ("gateway_cpu", "peer_cpu", "gw_p99", "peer_p99", "passed"),
    [
        (0.15, 0.075, 11.0, 6.0, [True, True]),  # exactly 2x CPU; +10 vs 2 x +5 added p99
        (0.16, 0.075, 11.0, 6.0, [False, True]),
        (0.10, 0.075, 12.0, 6.0, [True, False]),
    ],
)
def test_gateway_is_judged_against_twice_the_peer(
    gateway_cpu: float, peer_cpu: float, gw_p99: float, peer_p99: float, passed: list[bool]
) -> None:
    verdicts = judge_peer([_level(64, gateway_cpu, peer_cpu, gw_p99, peer_p99)])
    assert [v.name for v in verdicts] == [
        "gateway/peer CPU per request at c=64",
        "added p99 at c=64 (plain) vs 2x peer",
    ]
    assert [v.passed for v in verdicts] == passed


def test_no_peer_no_verdicts_and_json_puts_the_peer_beside_the_gateway() -> None:
    level = _level(16, 0.2, 0.1, 5.0, 3.0)
    assert judge_peer([LevelResult(False, 16, level.direct, level.gateway)]) == []
    doc = level.to_json()
    assert set(doc["peer"]) == set(doc["gateway"])  # type: ignore[arg-type]
    assert doc["peer_cpu_ms_per_request"] == 0.1
    assert doc["peer_added_p99_ms"] == pytest.approx(2.0)
    assert len(judge_peer([level])) == 2  # c=16 ratio + added p99 at the top level

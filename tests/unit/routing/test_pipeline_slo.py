"""Flow control's SLO gate: shed or defer a request predicted to miss its TTFT target, and the
lifecycle that trains the predictor."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from pilothouse.clock import ManualClock
from pilothouse.config.fleet import FlowControlSpec, SaturationSpec
from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import RequestShed
from pilothouse.routing import DEFER, Route, RoutingPipeline, Ticket, Wait
from pilothouse.scheduling.config import load_scheduler_config
from pilothouse.scheduling.latency import LatencyFeatures
from pilothouse.scheduling.plugins.scorers.slo_aware import SloAwareScorer
from pilothouse.scheduling.scheduler import build_scheduler

from .conftest import REPLICA, req

# Cold estimate: 20 ms + (backlog + prompt tokens) / 10,000 tok/s. Priority 1: 10 s target.
SLO_SCHEDULER = {
    "plugins": [
        {
            "type": "slo-aware",
            "parameters": {"ttft_target_s": 0.5, "ttft_targets_s": {1: 10.0}, "warmup": 1000},
        },
        {"type": "max-score"},
    ],
    "profiles": [{"name": "p", "plugins": [{"ref": "slo-aware"}, {"ref": "max-score"}]}],
}


def _pipeline(clock: ManualClock, **slo: object) -> RoutingPipeline:
    pool = EndpointPool()
    pool.add(REPLICA, ready=True)
    flow = FlowControlSpec.model_validate(
        {
            "enabled": True,
            "queue_timeout_s": 10.0,
            "saturation": SaturationSpec(max_in_flight_per_replica=100),
            "slo": slo,
        }
    )
    scheduler = build_scheduler(load_scheduler_config(SLO_SCHEDULER), clock, seed=0)
    return RoutingPipeline(pool, scheduler, clock, flow=flow, recheck_s=60.0)


def _start(p: RoutingPipeline, key: str, tokens: int, priority: int = 0) -> Ticket:
    ticket = p.open(req(key, priority=priority, tokens=tokens))
    decision = p.decide(ticket)
    assert isinstance(decision, Route)
    p.started(ticket, decision.pick)
    return ticket


@pytest.mark.parametrize(
    ("slo", "routes"),
    [
        pytest.param({}, True, id="off-by-default"),
        pytest.param({"action": "shed", "margin": 1.5}, True, id="within-margin"),
        pytest.param({"action": "shed"}, False, id="shed"),
    ],
)
def test_a_request_predicted_over_its_target_is_shed_when_configured(
    clock: ManualClock, slo: dict[str, object], routes: bool
) -> None:
    p = _pipeline(clock, **slo)
    _start(p, "big", 10_000, priority=1)  # predicted 1.02 s, within its 10 s
    ticket = p.open(req("late", tokens=1000))  # predicted 1.12 s against 0.5 s
    if routes:
        assert isinstance(p.decide(ticket), Route)
        return
    with pytest.raises(RequestShed, match="predicted time to first token") as caught:
        p.decide(ticket)
    assert caught.value.status == 429


def test_the_gate_is_part_of_flow_control_and_off_without_it(clock: ManualClock) -> None:
    p = _pipeline(clock, action="shed")
    p.flow = p.flow.model_copy(update={"enabled": False})
    _start(p, "big", 10_000, priority=1)
    assert isinstance(p.decide(p.open(req("late", tokens=1000))), Route)


async def test_a_deferred_request_is_decided_again_when_a_request_finishes(
    clock: ManualClock,
) -> None:
    p = _pipeline(clock, action="defer")
    big = _start(p, "big", 10_000, priority=1)
    late = p.open(req("late", tokens=1000))
    assert p.decide(late) == Wait(DEFER, "m")
    task = asyncio.create_task(p.route(late))
    await asyncio.sleep(0)
    assert not task.done()
    assert p.waiting.queued(DEFER, "m") == 1
    p.finished(big)  # its backlog leaves: predicted 0.12 s now
    route = await asyncio.wait_for(task, 1.0)
    assert route.pick.endpoint.name == "r0"
    assert route.pick.ttft_estimate is not None
    assert not route.pick.ttft_estimate.misses()


async def test_a_deferred_request_is_shed_after_the_queue_timeout(clock: ManualClock) -> None:
    p = _pipeline(clock, action="defer")
    _start(p, "big", 10_000, priority=1)
    other = _start(p, "other", 5_000, priority=1)
    task = asyncio.create_task(p.route(p.open(req("late", tokens=1000))))
    await asyncio.sleep(0)
    clock.advance(10.0)
    p.finished(other)  # decided again, still over its target, deferred for 10 s: shed
    with pytest.raises(RequestShed):
        await asyncio.wait_for(task, 1.0)


def test_the_first_token_trains_the_scorer_with_the_features_seen_at_placement(
    clock: ManualClock,
) -> None:
    p = _pipeline(clock)
    scorer = p.scheduler.plugins["slo-aware"]
    assert isinstance(scorer, SloAwareScorer)
    seen: list[tuple[str, LatencyFeatures, float]] = []

    class Recorder:
        def observe_ttft(self, endpoint: str, features: LatencyFeatures, ttft_s: float) -> None:
            seen.append((endpoint, features, ttft_s))

    p = RoutingPipeline(p.pool, p.scheduler, clock, flow=p.flow, observers=[Recorder()])
    first = _start(p, "a", 2_000)
    second = _start(p, "b", 500)
    clock.advance(0.25)
    p.first_token(first)
    p.first_token(first)  # told once
    assert seen == [
        ("r0", LatencyFeatures(uncached_tokens=2_000, prompt_tokens=2_000), 0.25),
    ]
    assert scorer.predictor.observations("r0") == 1
    clock.advance(0.25)
    p.first_token(second)
    endpoint, features, ttft = seen[1]
    assert features.wait_s == pytest.approx(0.22)  # the first's predicted time: 20 ms + 0.2 s
    assert (endpoint, replace(features, wait_s=0.0), ttft) == (
        "r0",
        LatencyFeatures(
            uncached_tokens=500, prompt_tokens=500, backlog_tokens=2_000, awaiting=1, in_flight=1
        ),
        0.5,
    )


def test_the_prefill_queue_estimate_is_on_the_snapshots_the_scorer_sees(
    clock: ManualClock,
) -> None:
    """The scorer's predictions (cold here) estimate each endpoint's prefill queue; a first
    token re-anchors it and the last one empties it."""
    p = _pipeline(clock)
    first = _start(p, "a", 2_000)  # 0.22 s alone
    second = _start(p, "b", 3_000)  # 0.32 s alone: drains at 0.54 s
    clock.advance(0.1)
    probe = p.decide(p.open(req("c", tokens=100)))
    assert isinstance(probe, Route)
    assert probe.pick.endpoint.prefill_wait_s == pytest.approx(0.44)
    clock.advance(0.3)  # the first ran late (0.4 s): the second's 0.32 s start now
    p.first_token(first)
    assert p.pool.candidates("m")[0].prefill_wait_s == 0.0  # the pool's own snapshot
    probe = p.decide(p.open(req("d", tokens=100)))
    assert isinstance(probe, Route)
    assert probe.pick.endpoint.prefill_wait_s == pytest.approx(0.32)
    p.first_token(second)
    probe = p.decide(p.open(req("e", tokens=100)))
    assert isinstance(probe, Route)
    assert probe.pick.endpoint.prefill_wait_s == 0.0


def test_a_finished_requests_token_count_gives_the_itl_observers_its_mean_gap(
    clock: ManualClock,
) -> None:
    p = _pipeline(clock)
    itls: list[tuple[str, float]] = []

    class ItlRecorder:
        def observe_itl(self, endpoint: str, features: LatencyFeatures, itl_s: float) -> None:
            itls.append((endpoint, itl_s))

    p = RoutingPipeline(p.pool, p.scheduler, clock, flow=p.flow, observers=[ItlRecorder()])
    ticket = _start(p, "a", 100)
    clock.advance(0.1)
    p.first_token(ticket)
    clock.advance(2.0)
    p.finished(ticket, output_tokens=41)  # 40 gaps in 2 s
    assert itls == [("r0", pytest.approx(0.05))]
    unknown = _start(p, "b", 100)
    p.first_token(unknown)
    p.finished(unknown)  # the front door did not count its tokens: nothing observed
    assert len(itls) == 1

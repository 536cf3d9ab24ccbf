"""The scheduling cycle: clamping, weights, pickers, profiles, post-schedule, clock, seed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields

import pytest

from pilothouse.clock import ManualClock
from pilothouse.errors import NoEndpointAvailable, SchedulingError
from pilothouse.scheduling.config import builtin_config, load_scheduler_config
from pilothouse.scheduling.interfaces import (
    LATENCY_UNCACHED_TOKENS_KEY,
    UNCACHED_TOKENS_KEY,
    CycleState,
    Plugin,
)
from pilothouse.scheduling.registry import default_registry
from pilothouse.scheduling.scheduler import Scheduler, build_scheduler
from pilothouse.scheduling.testing import endpoint, request
from pilothouse.scheduling.types import (
    Endpoint,
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
    ScoredEndpoint,
)

EPS = [endpoint("a"), endpoint("b"), endpoint("c")]


class FixedScorer:
    """Returns the same values every cycle and remembers what it saw."""

    def __init__(self, name: str, values: Sequence[float]) -> None:
        self.name = name
        self.values = list(values)
        self.seen_now: list[float] = []

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        self.seen_now.append(state.now)
        return self.values


class DropFilter:
    def __init__(self, name: str, drop: set[str]) -> None:
        self.name = name
        self.drop = drop

    def filter(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[Endpoint]:
        return [e for e in endpoints if e.name not in self.drop]


class RecordingPicker:
    """Picks the highest score (first on ties) and records what it was given."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[dict[str, float]] = []

    def pick(
        self, state: CycleState, request: SchedulingRequest, scored: Sequence[ScoredEndpoint]
    ) -> tuple[Endpoint, ...]:
        self.seen.append({s.endpoint.name: s.score for s in scored})
        ranked = sorted(scored, key=lambda s: -s.score)
        return tuple(s.endpoint for s in ranked)


class Recorder:
    """A PostSchedule plugin that is in no profile."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[float, str, str]] = []

    def post_schedule(
        self, state: CycleState, request: SchedulingRequest, result: SchedulingResult
    ) -> None:
        self.calls.append((state.now, request.request_id, result.target.name))


def _scheduler(
    plugins: Mapping[str, Plugin], refs: list[dict[str, object]], clock: ManualClock | None = None
) -> Scheduler:
    registry = default_registry()
    for name, plugin in plugins.items():
        registry.register(name, lambda n, p, c, plugin=plugin: plugin)
    config = load_scheduler_config(
        {
            "plugins": [{"type": name} for name in plugins],
            "profiles": [{"name": "p", "plugins": refs}],
        }
    )
    return build_scheduler(config, clock or ManualClock(), registry=registry, seed=3)


@pytest.mark.parametrize(
    ("raw", "weight", "expected"),
    [
        pytest.param([0.2, 0.5, 0.9], 1.0, [0.2, 0.5, 0.9], id="in-range"),
        pytest.param([-0.5, 1.5, 0.25], 1.0, [0.0, 1.0, 0.25], id="clamped"),
        pytest.param([math.nan, 2.0, -math.inf], 1.0, [0.0, 1.0, 0.0], id="nan-and-inf"),
        pytest.param([0.5, 1.5, 0.25], 4.0, [2.0, 4.0, 1.0], id="weighted-after-clamp"),
        pytest.param([0.5, 1.0, 0.25], 0.0, [0.0, 0.0, 0.0], id="zero-weight"),
    ],
)
def test_scores_are_clamped_then_weighted(
    raw: list[float], weight: float, expected: list[float]
) -> None:
    picker = RecordingPicker("pick")
    scorer = FixedScorer("s", raw)
    scheduler = _scheduler({"s": scorer, "pick": picker}, [{"ref": "s", "weight": weight},
                                                            {"ref": "pick"}])  # fmt: skip
    result = scheduler.schedule(request(), EPS)
    assert list(picker.seen[0].values()) == pytest.approx(expected)
    assert list(result.profiles["p"].scores.values()) == pytest.approx(expected)


def test_weighted_scores_are_summed_across_scorers() -> None:
    picker = RecordingPicker("pick")
    s1 = FixedScorer("s1", [1.0, 0.0, 0.5])
    s2 = FixedScorer("s2", [0.0, 1.0, 0.5])
    scheduler = _scheduler(
        {"s1": s1, "s2": s2, "pick": picker},
        [{"ref": "s1", "weight": 1}, {"ref": "s2", "weight": 3}, {"ref": "pick"}],
    )
    result = scheduler.schedule(request(), EPS)
    assert picker.seen[0] == pytest.approx({"a": 1.0, "b": 3.0, "c": 2.0})
    assert [e.name for e in (result.target, *result.fallbacks)] == ["b", "c", "a"]


def test_filters_run_before_scorers_and_pickers() -> None:
    picker = RecordingPicker("pick")
    scheduler = _scheduler(
        {"drop": DropFilter("drop", {"b"}), "pick": picker}, [{"ref": "drop"}, {"ref": "pick"}]
    )
    result = scheduler.schedule(request(), EPS)
    assert set(picker.seen[0]) == {"a", "c"}
    assert "b" not in [e.name for e in result.profiles["p"].targets]


def test_no_endpoints_names_the_model() -> None:
    scheduler = build_scheduler(builtin_config("least-requests"), ManualClock())
    with pytest.raises(NoEndpointAvailable, match="'llama'"):
        scheduler.schedule(request(model="llama"), [])


def test_filters_removing_everything_is_no_endpoint_available() -> None:
    post = Recorder("post")
    scheduler = _scheduler(
        {
            "drop": DropFilter("drop", {"a", "b", "c"}),
            "pick": RecordingPicker("pick"),
            "post": post,
        },
        [{"ref": "drop"}, {"ref": "pick"}],
    )
    with pytest.raises(NoEndpointAvailable) as info:
        scheduler.schedule(request(model="llama"), EPS)
    assert "'llama'" in str(info.value)
    assert "filter 'drop'" in str(info.value)
    assert post.calls == []


def test_not_ready_endpoints_are_never_picked() -> None:
    scheduler = build_scheduler(builtin_config("default"), ManualClock(), seed=1)
    endpoints = [endpoint("a", ready=False), endpoint("b", in_flight=9), endpoint("c", ready=False)]
    for _ in range(10):
        assert scheduler.schedule(request(), endpoints).target.name == "b"
    with pytest.raises(NoEndpointAvailable, match="filter 'ready'"):
        scheduler.schedule(request(), [endpoint("a", ready=False)])


def test_wrong_number_of_scores_is_a_scheduling_error() -> None:
    scheduler = _scheduler(
        {"s": FixedScorer("s", [1.0]), "pick": RecordingPicker("pick")},
        [{"ref": "s"}, {"ref": "pick"}],
    )
    with pytest.raises(SchedulingError, match="returned 1 scores for 3 endpoints"):
        scheduler.schedule(request(), EPS)


def test_post_schedule_runs_for_every_plugin_that_has_it() -> None:
    clock = ManualClock(100.0)
    post = Recorder("post")
    scheduler = _scheduler(
        {"pick": RecordingPicker("pick"), "post": post}, [{"ref": "pick"}], clock=clock
    )
    scheduler.schedule(SchedulingRequest(request_id="r1", model="m"), EPS)
    clock.advance(2.5)
    scheduler.schedule(SchedulingRequest(request_id="r2", model="m"), EPS)
    assert post.calls == [(100.0, "r1", "a"), (102.5, "r2", "a")]


def test_cycle_state_sees_the_injected_clock() -> None:
    clock = ManualClock(5.0)
    scorer = FixedScorer("s", [0.0, 0.0, 0.0])
    scheduler = _scheduler({"s": scorer, "pick": RecordingPicker("pick")},
                           [{"ref": "s"}, {"ref": "pick"}], clock=clock)  # fmt: skip
    scheduler.schedule(request(), EPS)
    clock.set(42.0)
    scheduler.schedule(request(), EPS)
    assert scorer.seen_now == [5.0, 42.0]


class CountingClock(ManualClock):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def now(self) -> float:
        self.reads += 1
        return super().now()


def test_clock_is_read_once_per_cycle() -> None:
    clock = CountingClock()
    scheduler = build_scheduler(builtin_config("default"), clock, seed=0)
    scheduler.schedule(request("x" * 300), EPS)
    assert clock.reads == 1


@pytest.mark.parametrize("name", ["blend", "random", "least-requests", "prefix-load"])
def test_same_seed_same_decisions(name: str) -> None:
    def run(seed: int) -> list[str]:
        scheduler = build_scheduler(builtin_config(name), ManualClock(), seed=seed)
        endpoints = [endpoint(f"e{i}") for i in range(6)]
        return [scheduler.schedule(request(f"prompt {i}" * 20), endpoints).target.name
                for i in range(40)]  # fmt: skip

    assert run(11) == run(11)
    assert run(11) != run(12)


class TwoProfiles:
    """Runs "prefill" then "decode"; decode is primary."""

    name = "two"

    def pick_profiles(
        self,
        state: CycleState,
        request: SchedulingRequest,
        profiles: Sequence[str],
        results: Mapping[str, ProfileResult],
    ) -> Sequence[str]:
        if not results:
            return ["prefill"]
        return ["decode"] if "decode" not in results else []

    def process_results(
        self, state: CycleState, request: SchedulingRequest, results: Mapping[str, ProfileResult]
    ) -> SchedulingResult:
        return SchedulingResult("decode", results, headers={"x-prefill": "yes"})


def test_custom_profile_handler_runs_several_profiles() -> None:
    registry = default_registry()
    registry.register("two", lambda n, p, c: TwoProfiles())
    registry.register("drop-a", lambda n, p, c: DropFilter(n, {"a"}))
    config = load_scheduler_config(
        {
            "plugins": [{"type": "two"}, {"type": "drop-a"}, {"type": "round-robin"}],
            "profiles": [
                {"name": "decode", "plugins": [{"ref": "round-robin"}]},
                {"name": "prefill", "plugins": [{"ref": "drop-a"}, {"ref": "round-robin"}]},
            ],
            "profile_handler": "two",
        }
    )
    result = build_scheduler(config, ManualClock(), registry=registry).schedule(request(), EPS)
    assert list(result.profiles) == ["prefill", "decode"]
    assert result.profiles["prefill"].targets[0].name == "b"
    assert result.target.name == "b"  # round-robin shared: second step
    assert result.headers == {"x-prefill": "yes"}


@pytest.mark.parametrize(
    ("asked", "message"),
    [pytest.param(["nope"], "unknown profile 'nope'", id="unknown"),
     pytest.param(["p", "p"], "profile 'p' twice", id="twice")],
)  # fmt: skip
def test_profile_handler_mistakes_are_scheduling_errors(asked: list[str], message: str) -> None:
    class Bad:
        name = "bad"

        def pick_profiles(self, *args: object) -> Sequence[str]:
            return asked

        def process_results(self, *args: object) -> SchedulingResult:
            raise AssertionError("not reached")

    profile = _scheduler({"pick": RecordingPicker("pick")}, [{"ref": "pick"}]).profiles["p"]
    scheduler = Scheduler(ManualClock(), {"p": profile}, Bad())
    with pytest.raises(SchedulingError, match=message):
        scheduler.schedule(request(), EPS)


class UncachedScorer(FixedScorer):
    """Publishes each endpoint's uncached prompt tokens, as prefix scorers do."""

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        state.data[UNCACHED_TOKENS_KEY] = {e.name: 10 * i for i, e in enumerate(endpoints)}
        state.data[LATENCY_UNCACHED_TOKENS_KEY] = {e.name: 7 * i for i, e in enumerate(endpoints)}
        return super().score(state, request, endpoints)


class HeaderHandler(TwoProfiles):
    name = "handler"

    def pick_profiles(
        self,
        state: CycleState,
        request: SchedulingRequest,
        profiles: Sequence[str],
        results: Mapping[str, ProfileResult],
    ) -> Sequence[str]:
        return [] if results else ["p"]

    def process_results(
        self, state: CycleState, request: SchedulingRequest, results: Mapping[str, ProfileResult]
    ) -> SchedulingResult:
        return SchedulingResult("p", results, headers={"x-h": "1"})


def test_the_primary_targets_uncached_tokens_join_the_handlers_result() -> None:
    registry = default_registry()
    registry.register("handler", lambda n, p, c: HeaderHandler())
    registry.register("uncached", lambda n, p, c: UncachedScorer(n, [0.0, 1.0, 0.0]))
    registry.register("picker", lambda n, p, c: RecordingPicker(n))
    config = load_scheduler_config(
        {
            "plugins": [{"type": "handler"}, {"type": "uncached"}, {"type": "picker"}],
            "profiles": [{"name": "p", "plugins": [{"ref": "uncached"}, {"ref": "picker"}]}],
            "profile_handler": "handler",
        }
    )
    result = build_scheduler(config, ManualClock(), registry=registry).schedule(request(), EPS)
    assert result.target.name == "b"
    assert result.uncached_tokens == 10
    assert result.latency_uncached_tokens == 7  # what the engine will find, for predictors
    assert (result.primary_profile, list(result.profiles)) == ("p", ["p"])
    assert result.headers == {"x-h": "1"}
    assert {f.name for f in fields(SchedulingResult)} == {  # a new field must be carried too
        "primary_profile",
        "profiles",
        "uncached_tokens",
        "headers",
        "ttft_estimate",
        "latency_uncached_tokens",
    }

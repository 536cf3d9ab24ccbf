"""The ``pd-disaggregation`` profile handler, alone and through the packaged ``pd`` config."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from pilothouse.clock import ManualClock
from pilothouse.errors import ConfigError, SchedulingError
from pilothouse.scheduling.config import builtin_config, load_scheduler_config
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import PREFIX_MATCH_KEY, UNCACHED_TOKENS_KEY, CycleState
from pilothouse.scheduling.plugins.profiles.pd import (
    PREFILLER_HEADER,
    PdParameters,
    PdProfileHandler,
    estimated_uncached,
)
from pilothouse.scheduling.scheduler import Scheduler, build_scheduler
from pilothouse.scheduling.testing import endpoint
from pilothouse.scheduling.types import Endpoint, ProfileResult, SchedulingRequest

LONG = "Summarise the attached quarterly report for the board, section by section. " * 40
SHORT = "Hi there, how are you?"


def _request(prompt: str, request_id: str = "r") -> SchedulingRequest:
    return SchedulingRequest(
        request_id=request_id, model="m", prompt=prompt, prompt_tokens=len(prompt) // 4 + 1
    )


def _role(name: str, role: str | None, *, ready: bool = True) -> Endpoint:
    labels = {} if role is None else {"llm-d.ai/role": role}
    return endpoint(name, ready=ready).evolve(labels=MappingProxyType(labels))


DISAGGREGATED = [_role("p0", "prefill"), _role("p1", "prefill"), _role("d0", "decode")]


def _pd(clock: ManualClock | None = None) -> Scheduler:
    return build_scheduler(builtin_config("pd"), clock or ManualClock(), seed=0)


def _routed(scheduler: Scheduler, prompt: str, pool: list[Endpoint]) -> tuple[str, str | None]:
    result = scheduler.schedule(_request(prompt), pool)
    return result.target.name, result.headers.get(PREFILLER_HEADER)


@pytest.mark.parametrize(
    ("prompt", "pool", "target", "prefillers"),
    [
        pytest.param(LONG, DISAGGREGATED, "d0", {"p0.local:8000", "p1.local:8000"}, id="long"),
        pytest.param(SHORT, DISAGGREGATED, "d0", {None}, id="short"),
        pytest.param(LONG, [_role("u0", None), _role("u1", None)], None, {None}, id="unlabelled"),
        pytest.param(
            LONG,
            [_role("p0", "prefill", ready=False), _role("d0", "decode")],
            "d0",
            {None},
            id="prefill-down",
        ),
        pytest.param(
            LONG, [_role("p0", "prefill"), _role("b0", "both")], "b0", {"p0.local:8000"}, id="both"
        ),
    ],
)
def test_the_pd_config_routes_by_prompt_length_and_role(
    prompt: str, pool: list[Endpoint], target: str | None, prefillers: set[str | None]
) -> None:
    name, prefiller = _routed(_pd(), prompt, pool)
    if target is not None:
        assert name == target
    assert prefiller in prefillers


def test_disaggregated_result_has_both_profiles_and_no_decode_backlog() -> None:
    result = _pd().schedule(_request(LONG), DISAGGREGATED)
    assert result.primary_profile == "decode"
    assert result.profiles["prefill"].targets[0].name in {"p0", "p1"}
    assert result.uncached_tokens == 0
    assert result.headers[PREFILLER_HEADER] == result.profiles["prefill"].targets[0].address


def test_a_cached_prompt_is_decoded_alone() -> None:
    scheduler = _pd()
    assert _routed(scheduler, LONG + " first", DISAGGREGATED)[1] is not None
    # the decode replica now holds the long prefix: only the new suffix is uncached
    assert _routed(scheduler, LONG + " second", DISAGGREGATED) == ("d0", None)


def test_the_prefill_replica_never_receives_the_request_itself() -> None:
    scheduler = _pd()
    for i in range(10):
        assert _routed(scheduler, f"{i} " + LONG, DISAGGREGATED)[0] == "d0"


@pytest.mark.parametrize(
    ("data", "prompt_tokens", "expected"),
    [
        pytest.param({}, 1000, 1000, id="no-estimate"),
        pytest.param({PREFIX_MATCH_KEY: {"d": 0.75}}, 1000, 250, id="prefix-match"),
        pytest.param({PREFIX_MATCH_KEY: {"other": 0.75}}, 1000, 1000, id="not-matched"),
        pytest.param({PREFIX_MATCH_KEY: {"d": 1.5}}, 1000, 0, id="clamped"),
        pytest.param(
            {PREFIX_MATCH_KEY: {"d": 0.5}, UNCACHED_TOKENS_KEY: {"d": 123}},
            1000,
            123,
            id="uncached-wins",
        ),
    ],
)
def test_estimated_uncached(data: dict[str, object], prompt_tokens: int, expected: int) -> None:
    state = CycleState(0.0, dict(data))
    request = SchedulingRequest(request_id="r", model="m", prompt_tokens=prompt_tokens)
    assert estimated_uncached(state, request, "d") == expected


def _decoded(name: str = "d") -> dict[str, ProfileResult]:
    return {"decode": ProfileResult(targets=(endpoint(name),))}


@pytest.mark.parametrize(
    ("threshold", "match", "results", "expected"),
    [
        pytest.param(100, None, {}, ["decode"], id="decode-first"),
        pytest.param(100, None, _decoded(), ["prefill"], id="cold-long"),
        pytest.param(100, 0.95, _decoded(), [], id="cached"),
        pytest.param(0, 1.0, _decoded(), ["prefill"], id="threshold-zero"),
        pytest.param(100, None, {"decode": ProfileResult(targets=())}, [], id="decode-failed"),
        pytest.param(
            100,
            None,
            {**_decoded(), "prefill": ProfileResult(targets=(endpoint("p"),))},
            [],
            id="done",
        ),
    ],
)
def test_pick_profiles(
    threshold: int, match: float | None, results: dict[str, ProfileResult], expected: list[str]
) -> None:
    handler = PdProfileHandler("pd", PdParameters(threshold_tokens=threshold))
    state = CycleState(0.0, {} if match is None else {PREFIX_MATCH_KEY: {"d": match}})
    request = SchedulingRequest(request_id="r", model="m", prompt_tokens=1000)
    picked = handler.pick_profiles(state, request, ["decode", "prefill"], results)
    assert list(picked) == expected


def test_a_missing_profile_is_a_scheduling_error() -> None:
    handler = PdProfileHandler("pd", PdParameters(prefill_profile="prefil"))
    with pytest.raises(SchedulingError, match="needs a profile named 'prefil'"):
        handler.pick_profiles(CycleState(0.0), _request(LONG), ["decode", "prefill"], {})


def test_profile_names_are_configurable() -> None:
    config = load_scheduler_config(
        {
            "plugins": [
                {"type": "role", "name": "fast", "parameters": {"roles": ["prefill"]}},
                {"type": "role", "name": "slow", "parameters": {"roles": ["decode"]}},
                {"type": "max-score"},
                {
                    "type": "pd-disaggregation",
                    "name": "split",
                    "parameters": {"decode_profile": "gen", "prefill_profile": "ctx"},
                },
            ],
            "profiles": [
                {"name": "gen", "plugins": [{"ref": "slow"}, {"ref": "max-score"}]},
                {"name": "ctx", "plugins": [{"ref": "fast"}, {"ref": "max-score"}]},
            ],
            "profile_handler": "split",
        }
    )
    result = build_scheduler(config, ManualClock()).schedule(_request(LONG), DISAGGREGATED)
    assert (result.primary_profile, result.target.name) == ("gen", "d0")
    assert PREFILLER_HEADER in result.headers


@pytest.mark.parametrize(
    ("parameters", "path", "message"),
    [
        pytest.param({"threshold_tokens": -1}, "threshold_tokens", "greater than", id="negative"),
        pytest.param({"decode_profile": ""}, "decode_profile", "at least 1", id="empty"),
        pytest.param({"prefill_profile": "decode"}, "", "different profiles", id="same"),
        pytest.param({"threshold": 5}, "threshold", "unknown", id="unknown"),
    ],
)
def test_bad_parameters(parameters: dict[str, object], path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        PdProfileHandler.create("pd", parameters, PluginContext(ManualClock()))
    assert info.value.path == path

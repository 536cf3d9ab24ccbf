"""``pd-disaggregation`` profile handler: prefill on one replica, decode on another.

Runs two profiles, as llm-d's P/D handler does:

1. the **decode** profile (``decode_profile``) always runs first; its target is where the
   request goes (the primary result);
2. the handler then estimates the prompt tokens that decode target would have to prefill
   itself: the scheduler's ``uncached-tokens`` estimate for it when a plugin published one,
   else the prompt length times one minus its ``prefix-match`` fraction
   (``approx-prefix``), else the whole prompt (``SchedulingRequest.prompt_tokens``);
3. if that is at least ``threshold_tokens``, the **prefill** profile (``prefill_profile``)
   runs too, and the result carries ``x-prefiller-host-port: <prefill address>`` for the
   decode replica's sidecar, which has the prompt prefilled there and the KV cache moved
   over. Short or mostly cached prompts are served by the decode replica alone.

Each profile restricts its candidates with a ``role`` filter (``llm-d.ai/role``). When the
prefill profile finds no endpoint, or picks the decode target itself (a ``both`` replica),
the request is served by the decode replica alone, without the header. When a request is
disaggregated its ``uncached_tokens`` is 0: the decode replica receives the prompt's KV
cache and prefills nothing itself, so it adds nothing to that replica's prefill backlog.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from pydantic import Field, model_validator

from pilothouse.errors import SchedulingError
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import PREFIX_MATCH_KEY, UNCACHED_TOKENS_KEY, CycleState
from pilothouse.scheduling.plugins.base import NamedPlugin
from pilothouse.scheduling.types import (
    Endpoint,
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
)
from pilothouse.scheduling.validation import ParametersModel, parse_parameters

PREFILLER_HEADER = "x-prefiller-host-port"


class PdParameters(ParametersModel):
    threshold_tokens: int = Field(default=512, ge=0)
    decode_profile: str = Field(default="decode", min_length=1)
    prefill_profile: str = Field(default="prefill", min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> PdParameters:
        if self.decode_profile == self.prefill_profile:
            raise ValueError("decode_profile and prefill_profile must name different profiles")
        return self


def estimated_uncached(state: CycleState, request: SchedulingRequest, endpoint: str) -> int:
    """Prompt tokens ``endpoint`` would prefill itself, from what this cycle's plugins found."""
    uncached = state.data.get(UNCACHED_TOKENS_KEY)
    if isinstance(uncached, dict):
        tokens = uncached.get(endpoint)
        if isinstance(tokens, int):
            return tokens
    match = state.data.get(PREFIX_MATCH_KEY)
    if isinstance(match, dict):
        fraction = match.get(endpoint)
        if isinstance(fraction, float | int):
            return round(request.prompt_tokens * (1.0 - min(max(float(fraction), 0.0), 1.0)))
    return request.prompt_tokens


class PdProfileHandler(NamedPlugin):
    """Decode first; prefill elsewhere when the decode target would prefill too much."""

    __slots__ = ("_decode", "_key", "_prefill", "_threshold")

    def __init__(self, name: str, parameters: PdParameters | None = None) -> None:
        super().__init__(name)
        p = parameters or PdParameters()
        self._threshold = p.threshold_tokens
        self._decode = p.decode_profile
        self._prefill = p.prefill_profile
        self._key = f"pd-disaggregation/{name}/uncached"

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> PdProfileHandler:
        return cls(name, parse_parameters(PdParameters, parameters))

    def pick_profiles(
        self,
        state: CycleState,
        request: SchedulingRequest,
        profiles: Sequence[str],
        results: Mapping[str, ProfileResult],
    ) -> Sequence[str]:
        if self._decode not in results:
            for wanted in (self._decode, self._prefill):
                if wanted not in profiles:
                    raise SchedulingError(
                        f"profile handler {self.name!r} needs a profile named {wanted!r} "
                        f"(profiles: {', '.join(profiles)})"
                    )
            return (self._decode,)
        decode = results[self._decode]
        if self._prefill in results or not decode.targets:
            return ()
        uncached = estimated_uncached(state, request, decode.targets[0].name)
        state.data[self._key] = uncached
        return (self._prefill,) if uncached >= self._threshold else ()

    def process_results(
        self,
        state: CycleState,
        request: SchedulingRequest,
        results: Mapping[str, ProfileResult],
    ) -> SchedulingResult:
        decode = results.get(self._decode)
        prefiller = self._prefiller(results, decode)
        if prefiller is None:
            uncached = state.data.get(self._key)
            return SchedulingResult(
                primary_profile=self._decode,
                profiles=results,
                uncached_tokens=uncached if isinstance(uncached, int) else None,
            )
        return SchedulingResult(
            primary_profile=self._decode,
            profiles=results,
            uncached_tokens=0,
            headers=MappingProxyType({PREFILLER_HEADER: prefiller.address}),
        )

    def _prefiller(
        self, results: Mapping[str, ProfileResult], decode: ProfileResult | None
    ) -> Endpoint | None:
        """The prefill target, when there is one distinct from the decode target."""
        prefill = results.get(self._prefill)
        if decode is None or not decode.targets or prefill is None or not prefill.targets:
            return None
        chosen = prefill.targets[0]
        return None if chosen.name == decode.targets[0].name else chosen

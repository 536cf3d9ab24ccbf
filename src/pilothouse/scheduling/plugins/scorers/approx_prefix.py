"""``approx-prefix`` scorer: approximate prefix-cache affinity from routing history.

No tokenizer and no KV events: the prompt text is cut into ``block_size``-character blocks
(a trailing partial block is ignored, as engines cache only full blocks) and each block is
hashed together with its parent's hash, so a block hash stands for the whole prefix up to it.
After each cycle the picked endpoint is remembered to hold those blocks (a bounded LRU per
endpoint). An endpoint's score is the fraction of the request's blocks, from the first, that
it was last sent: 1.0 for a repeat of a prompt routed there, 0.0 for an unseen one.

Tier-aware (``offload_capacity_per_endpoint`` > 0, for engines with a CPU tier): blocks the
recent LRU pushes out are kept as *offloaded*, and the score becomes the share of the
prompt's prefill a hit saves (:mod:`._tier_cost`): recent blocks save their prefill,
offloaded ones their prefill minus the reload, with ``tier_costs`` from the engine. With the
default 0 the score is the matched fraction, as before. Tier-aware, it also publishes each
endpoint's uncached tokens as the engine will find them (``LATENCY_UNCACHED_TOKENS_KEY``:
the same cost model over the index's engine-faithful mirror of the offloaded tier, see
:mod:`._block_index`) for latency predictions; the score keeps the routing view.

The hashes are computed once per cycle and shared through ``CycleState.data``. Python's
``hash`` is salted per process; the index lives in memory, so that is fine (and it is about
three times as fast as blake2b over the same bytes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from pydantic import Field

from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import (
    LATENCY_UNCACHED_TOKENS_KEY,
    PREFIX_INDEX_SIZE_KEY,
    PREFIX_MATCH_KEY,
    CycleState,
)
from pilothouse.scheduling.plugins.base import NamedPlugin
from pilothouse.scheduling.plugins.scorers._block_index import BlockIndex
from pilothouse.scheduling.plugins.scorers._tier_cost import TierCostParameters, saved_fraction
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, SchedulingResult
from pilothouse.scheduling.validation import ParametersModel, parse_parameters


class ApproxPrefixParameters(ParametersModel):
    block_size: int = Field(default=64, gt=0)
    max_prefix_blocks: int = Field(default=256, gt=0)
    lru_capacity_per_endpoint: int = Field(default=31250, gt=0)
    max_endpoints: int = Field(default=4096, gt=0)
    offload_capacity_per_endpoint: int = Field(default=0, ge=0)
    tier_costs: TierCostParameters = Field(default_factory=TierCostParameters)


def prefix_hashes(prompt: str, block_size: int, max_blocks: int, seed: object = None) -> list[int]:
    """Chained hashes of the prompt's full blocks (at most ``max_blocks``)."""
    parent = hash(("pilothouse.approx-prefix", seed))
    end = min(len(prompt) // block_size, max_blocks) * block_size
    hashes: list[int] = []
    for start in range(0, end, block_size):
        parent = hash((parent, prompt[start : start + block_size]))
        hashes.append(parent)
    return hashes


class ApproxPrefixScorer(NamedPlugin):
    """Scores prefix affinity and, after each cycle, records where the prompt went."""

    __slots__ = ("_block_size", "_costs", "_index", "_key", "_max_blocks")

    def __init__(self, name: str, parameters: ApproxPrefixParameters | None = None) -> None:
        super().__init__(name)
        p = parameters or ApproxPrefixParameters()
        self._block_size = p.block_size
        self._max_blocks = p.max_prefix_blocks
        self._index = BlockIndex(
            p.lru_capacity_per_endpoint, p.max_endpoints, p.offload_capacity_per_endpoint
        )
        self._costs = p.tier_costs
        self._key = f"approx-prefix/{p.block_size}/{p.max_prefix_blocks}"

    @classmethod
    def create(
        cls, name: str, parameters: Mapping[str, object], ctx: PluginContext
    ) -> ApproxPrefixScorer:
        return cls(name, parse_parameters(ApproxPrefixParameters, parameters))

    @property
    def index(self) -> BlockIndex:
        """The routing history (read it in tests and dashboards; do not mutate)."""
        return self._index

    def hashes(self, state: CycleState, request: SchedulingRequest) -> list[int]:
        """This request's block hashes, computed once per cycle."""
        cached = state.data.get(self._key)
        if cached is None:
            hashes = prefix_hashes(request.prompt, self._block_size, self._max_blocks, request.lora)
            state.data[self._key] = hashes
            return hashes
        return cast("list[int]", cached)

    def score(
        self, state: CycleState, request: SchedulingRequest, endpoints: Sequence[Endpoint]
    ) -> Sequence[float]:
        hashes = self.hashes(state, request)
        if not hashes:
            return [0.0] * len(endpoints)
        total = len(hashes)
        names = [e.name for e in endpoints]
        if self._index.tiered:
            prompt, costs = request.prompt_tokens, self._costs
            scores = [
                saved_fraction(recent / total, off / total, prompt, costs)
                for recent, off in self._index.match_tiers_many(names, hashes)
            ]
            found = [
                round(prompt * (1.0 - saved_fraction(recent / total, held / total, prompt, costs)))
                for recent, held in self._index.match_engine_tiers_many(names, hashes)
            ]
            state.data[LATENCY_UNCACHED_TOKENS_KEY] = dict(zip(names, found, strict=True))
        else:
            scores = [m / total for m in self._index.match_many(names, hashes)]
        state.data[PREFIX_MATCH_KEY] = dict(zip(names, scores, strict=True))
        state.data[PREFIX_INDEX_SIZE_KEY] = dict(zip(names, self._index.sizes(names), strict=True))
        return scores

    def post_schedule(
        self, state: CycleState, request: SchedulingRequest, result: SchedulingResult
    ) -> None:
        hashes = self.hashes(state, request)
        if not hashes:
            return
        for profile in result.profiles.values():
            if profile.targets:
                self._index.record(profile.targets[0].name, hashes)

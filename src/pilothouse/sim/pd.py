"""Prefill/decode disaggregation in the cluster simulator.

When a scheduling result carries ``x-prefiller-host-port`` (the ``pd-disaggregation``
profile handler), the request runs in two legs, as with llm-d's decode sidecar and vLLM's
KV connector:

1. **prefill** on the replica the header names: the prompt (with that replica's own prefix
   cache) and one token (``max_tokens = 1``, the token is discarded);
2. **KV transfer**: ``kv_transfer_overhead_s + kv_transfer_s_per_token x prompt tokens``
   of virtual time after the prefill leg ends;
3. **decode** on the target replica: the prompt's full blocks arrive in its prefix cache
   (:func:`receive_kv`), so admission reuses them and computes only the partial last block;
   the first token and every later one come from there.

TTFT and e2e are measured from the arrival at the gateway, and the cache hit rate counts
the prefill leg's prefix-cache hits (the transferred blocks are not a cache hit). The
gateway counts the request in flight on the decode replica only (it knows nothing of the
prefill leg's progress), and so does the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from pilothouse.engines.kinds.vllm import vllm_priority
from pilothouse.scheduling.plugins.profiles.pd import PREFILLER_HEADER
from pilothouse.sim.cluster_types import ClusterConfig, SimRequest
from pilothouse.sim.engine_model import EngineModel
from pilothouse.sim.types import EngineRequest, FinishedRequest

PREFILL_SUFFIX = "#prefill"
ROLE_LABEL = "llm-d.ai/role"


def role_labels(config: ClusterConfig, index: int) -> Mapping[str, str]:
    """Replica ``index``'s labels: the first ``prefill_replicas`` prefill, the rest decode."""
    if config.prefill_replicas == 0:
        return {}
    return {ROLE_LABEL: "prefill" if index < config.prefill_replicas else "decode"}


@dataclass(frozen=True, slots=True)
class Handoff:
    """A disaggregated request between its legs (``ref`` of a KV-transfer event)."""

    request: SimRequest
    decode: int  # replica index of the decode leg
    arrival: float  # at the gateway
    cached_tokens: int = 0  # prefix-cache hits of the prefill leg


def receive_kv(engine: EngineModel, block_hashes: Sequence[int]) -> int:
    """Put transferred prompt blocks in ``engine``'s prefix cache; returns how many.

    The blocks enter as cached and unreferenced (most recently used), exactly as if a
    request had computed and released them, so the decode leg's admission hits them. Only
    as many leading blocks as the cache can hold without touching referenced blocks are
    taken; a step in flight is unaffected (available blocks do not change).
    """
    pool = engine.pool
    count = min(len(block_hashes), pool.available_blocks)
    if not pool.enable_prefix_caching or count == 0:
        return 0
    chain = block_hashes[:count]
    engine.take_blocks(count)  # evictions offload to the CPU tier, as in a step
    pool.register_all(chain)
    pool.release(chain, 0)
    return count


class Disaggregation:
    """The in-between state of disaggregated requests in one simulation run."""

    __slots__ = ("_by_address", "_config", "_pending")

    def __init__(self, config: ClusterConfig, addresses: Mapping[str, int]) -> None:
        self._config = config
        self._by_address = dict(addresses)  # replica address -> index
        self._pending: dict[str, Handoff] = {}  # by prefill-leg id, then by request id

    def prefiller(self, headers: Mapping[str, str]) -> int | None:
        """The index of the replica the scheduler's headers ask to prefill on, if any."""
        address = headers.get(PREFILLER_HEADER)
        if address is None:
            return None
        index = self._by_address.get(address)
        if index is None:
            raise ValueError(f"{PREFILLER_HEADER} names unknown replica {address!r}")
        return index

    def start(self, request: SimRequest, decode: int, now: float) -> EngineRequest:
        """Record the request and return its prefill leg."""
        leg = request.request_id + PREFILL_SUFFIX
        self._pending[leg] = Handoff(request, decode, now)
        return EngineRequest(
            request_id=leg,
            prompt_tokens=request.prompt_tokens,
            max_tokens=1,
            block_hashes=request.block_hashes,
            priority=vllm_priority(request.priority),
        )

    def is_prefill(self, request_id: str) -> bool:
        return request_id.endswith(PREFILL_SUFFIX) and request_id in self._pending

    def prefilled(self, done: FinishedRequest, now: float) -> tuple[float, Handoff]:
        """The prefill leg ended: when its KV reaches the decode replica, and the handoff."""
        handoff = replace(self._pending.pop(done.request_id), cached_tokens=done.cached_tokens)
        self._pending[handoff.request.request_id] = handoff
        config = self._config
        delay = config.kv_transfer_overhead_s
        delay += config.kv_transfer_s_per_token * handoff.request.prompt_tokens
        return now + delay, handoff

    def finished(self, done: FinishedRequest) -> FinishedRequest:
        """The decode leg's accounting as the client saw the whole request."""
        handoff = self._pending.pop(done.request_id, None)
        if handoff is None:
            return done
        return replace(done, arrival_time=handoff.arrival, cached_tokens=handoff.cached_tokens)

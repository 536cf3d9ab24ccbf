"""The world ``bench decision`` schedules into: prompts, a filled prefix index, endpoints.

Prompts are chats in the gateway's flattened form (``role\\ncontent\\n…``) whose contents
are workload token text (:mod:`pilothouse.bench.workloads.tokens`: four hex characters per
token), so ``approx-prefix`` (64-character blocks) and the simulator's tokenizer behind
``precise-prefix`` (16-token blocks) see the same sharing. Each of ``4 * replicas`` groups
has a system prompt and lives on one to three home replicas; a fill prompt is a group's
system prompt plus a fresh question, routed to one of its homes.

:func:`fill` records fill prompts until the prefix index holds the requested number of
blocks: in every ``approx-prefix`` routing history through its public ``record`` (as
``post_schedule`` would), and in the KV-event index through ``apply`` of ``BlockStored``
batches carrying only the blocks that replica did not hold yet (as an engine reports them).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from pilothouse.bench.workloads.tokens import random_tokens, render
from pilothouse.endpoints.kv_index import KVBlockIndex, block_keys
from pilothouse.kvevents import MEDIUM_GPU, BlockStored, KVEventBatch
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.plugins.scorers.approx_prefix import ApproxPrefixScorer
from pilothouse.scheduling.plugins.scorers.precise_prefix import PromptTokenizer
from pilothouse.scheduling.types import Endpoint, EndpointMetrics, SchedulingRequest

MODEL = "bench-model"
ENGINE = "sim"  # the gateway's default tokenizer serves `sim` endpoints
KV_BLOCK_TOKENS = 16
GROUPS_PER_REPLICA = 4
KINDS = ("shared-prefix", "continuation", "miss")
_KIND_WEIGHTS = (0.5, 0.25, 0.25)
_ENGINE_ROOT = 0x5EED  # the fake engine's own block-hash chain (never the index's keys)


@dataclass(frozen=True, slots=True)
class Group:
    system: str
    homes: tuple[str, ...]


@dataclass(slots=True)
class Corpus:
    """Groups, and a sample of the routed fill prompts (for continuations)."""

    rng: random.Random
    seed: int
    endpoints: tuple[str, ...]
    prompt_tokens: tuple[int, int]
    groups: list[Group] = field(default_factory=list)
    routed: list[tuple[str, str]] = field(default_factory=list)  # (prompt, replica)

    @classmethod
    def create(cls, replicas: int, prompt_tokens: tuple[int, int], seed: int) -> Corpus:
        corpus = cls(random.Random(seed), seed, endpoint_names(replicas), prompt_tokens)
        for _ in range(replicas * GROUPS_PER_REPLICA):
            corpus.groups.append(corpus.new_group())
        return corpus

    def text(self, tokens: int) -> str:
        return render(random_tokens(self.rng, tokens))

    def half_length(self) -> int:
        low, high = self.prompt_tokens
        return self.rng.randint(max(1, low // 2), max(1, high // 2))

    def new_group(self) -> Group:
        homes = tuple(self.rng.sample(self.endpoints, min(len(self.endpoints), 3)))
        return Group(self.text(self.half_length()), homes[: self.rng.randint(1, len(homes))])

    def chat(self, group: Group) -> str:
        return f"system\n{group.system}\nuser\n{self.text(self.half_length())}"

    def fill_prompt(self) -> tuple[str, str]:
        """A fill prompt and the replica it was routed to."""
        group = self.rng.choice(self.groups)
        routed = (self.chat(group), self.rng.choice(group.homes))
        if len(self.routed) < 1024:
            self.routed.append(routed)
        else:
            self.routed[self.rng.randrange(1024)] = routed
        return routed

    def request(self, request_id: str) -> tuple[SchedulingRequest, str]:
        """A measured request and its kind (hits on a shared prefix, deep hits, misses)."""
        kind = self.rng.choices(KINDS, _KIND_WEIGHTS)[0]
        if kind == "shared-prefix":
            prompt = self.chat(self.rng.choice(self.groups))
        elif kind == "continuation" and self.routed:
            earlier, _ = self.rng.choice(self.routed)
            answer = self.text(self.rng.randint(64, 512))
            prompt = f"{earlier}\nassistant\n{answer}\nuser\n{self.text(self.rng.randint(32, 256))}"
        else:
            kind = "miss"
            prompt = self.chat(self.new_group())
        tokens = len(prompt) // 4
        request = SchedulingRequest(request_id, MODEL, prompt, tokens, 256, stream=True)
        return request, kind


def endpoint_names(replicas: int) -> tuple[str, ...]:
    return tuple(f"replica-{i:03d}" for i in range(replicas))


def endpoint_snapshots(names: Sequence[str], variants: int, seed: int) -> list[list[Endpoint]]:
    """``variants`` snapshots of the pool under moderate, uneven load (rotated per decision)."""
    rng = random.Random(seed ^ 0xE9)
    snapshots = []
    for _ in range(variants):
        pool = []
        for i, name in enumerate(names):
            in_flight = rng.randint(0, 24)
            awaiting = rng.randint(0, min(in_flight, 4))
            metrics = EndpointMetrics(
                waiting=rng.randint(0, 6),
                running=rng.randint(0, 48),
                kv_cache_usage=0.97 if rng.random() < 0.02 else rng.uniform(0.2, 0.9),
                block_size=KV_BLOCK_TOKENS,
                num_gpu_blocks=16_384,
                updated_at=0.0,
            )
            address = f"10.0.{i // 200}.{i % 200 + 10}:8000"
            backlog = awaiting * rng.randint(0, 4000)
            ready = rng.random() > 0.01
            pool.append(
                Endpoint(
                    name,
                    address,
                    MODEL,
                    ENGINE,
                    ready,
                    in_flight=in_flight,
                    in_flight_tokens=backlog,
                    awaiting_first_token=awaiting,
                    metrics=metrics,
                )
            )
        snapshots.append(pool)
    return snapshots


@dataclass(slots=True)
class Targets:
    """What :func:`fill` writes into, and the tokenizer the engines would use."""

    histories: list[ApproxPrefixScorer]
    kv_index: KVBlockIndex | None = None
    tokenizer: PromptTokenizer | None = None
    stored: dict[str, set[int]] = field(default_factory=dict)  # engine hashes per replica

    def blocks(self) -> int:
        """Blocks held, summed over endpoints: the KV index when there is one."""
        if self.kv_index is not None:
            return sum(self.kv_index.size(e) for e in self.kv_index.endpoints())
        if self.histories:
            index = self.histories[0].index
            return sum(index.size(e) for e in index.endpoints())
        return 0


def fill(corpus: Corpus, targets: Targets, blocks: int, stall: int = 16) -> int:
    """Record fill prompts until ``targets`` hold ``blocks`` blocks, or until ``stall`` rounds
    of 32 prompts added nothing (the index is at its capacity); returns prompts used."""
    if not targets.histories and targets.kv_index is None:
        return 0
    used = 0
    best, idle = targets.blocks(), 0
    while best < blocks and idle < stall:
        for _ in range(32):  # counting blocks walks every endpoint: check now and then
            prompt, replica = corpus.fill_prompt()
            request = SchedulingRequest(f"fill-{used}", MODEL, prompt, len(prompt) // 4)
            for history in targets.histories:
                history.index.record(replica, history.hashes(CycleState(now=0.0), request))
            if targets.kv_index is not None:
                _store(targets, replica, request)
            used += 1
        held = targets.blocks()
        best, idle = max(best, held), 0 if held > best else idle + 1
    return used


def _store(targets: Targets, replica: str, request: SchedulingRequest) -> None:
    """Report the prompt's blocks that ``replica`` did not hold yet, as its engine would."""
    assert targets.kv_index is not None
    assert targets.tokenizer is not None
    tokens = list(targets.tokenizer.tokenize(request, ENGINE) or ())
    hashes = block_keys(tokens, KV_BLOCK_TOKENS, parent=_ENGINE_ROOT)
    held = targets.stored.setdefault(replica, set())
    first = next((i for i, h in enumerate(hashes) if h not in held), len(hashes))
    if first == len(hashes):
        return
    event = BlockStored(
        block_hashes=list(hashes[first:]),
        parent_block_hash=hashes[first - 1] if first else None,
        token_ids=tokens[first * KV_BLOCK_TOKENS : len(hashes) * KV_BLOCK_TOKENS],
        block_size=KV_BLOCK_TOKENS,
        lora_id=None,
        medium=MEDIUM_GPU,
        lora_name=None,
    )
    targets.kv_index.apply(replica, KVEventBatch(ts=0.0, events=[event]))
    held.update(hashes[first:])

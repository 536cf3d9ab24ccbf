"""Settings of one simulator server (what ``pilothouse engine sim`` flags map to)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pilothouse.errors import ConfigError
from pilothouse.servers.sim.script import Script
from pilothouse.sim.config import EngineConfig, EngineOverrides, apply_overrides
from pilothouse.sim.presets import DEFAULT_PRESET, get_preset

KV_FORMATS = ("array", "map")


def lora_module_name(module: str) -> str:
    """The adapter name of a ``--lora-modules`` value: ``NAME`` or vLLM's ``NAME=PATH``."""
    return module.split("=", 1)[0]


def lora_module_path(module: str) -> str:
    """The adapter path of a ``--lora-modules`` value (the name when no path is given)."""
    name, _, path = module.partition("=")
    return path or name


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Failure injection: see :mod:`pilothouse.servers.sim.faults`."""

    error_rate: float = 0.0
    hang_rate: float = 0.0
    startup_delay_s: float = 0.0
    crash_after: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "hang_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"must be between 0 and 1, got {value}", name)
        if self.error_rate + self.hang_rate > 1.0:
            raise ConfigError("error_rate + hang_rate must not exceed 1", "hang_rate")
        if self.startup_delay_s < 0:
            raise ConfigError("must be >= 0", "startup_delay")
        if self.crash_after is not None and self.crash_after < 1:
            raise ConfigError("must be >= 1", "crash_after")


@dataclass(frozen=True, slots=True)
class KVEventSettings:
    """ZMQ KV-event publishing; ports of 0 bind a free port, ``None`` turns a socket off."""

    port: int | None = None
    replay_port: int | None = None
    topic: str | None = None  # None: llm-d's "kv@<host>:<port>@<model>"
    encoding: str = "array"
    buffer_steps: int = 10_000

    def __post_init__(self) -> None:
        if self.encoding not in KV_FORMATS:
            raise ConfigError(f"must be one of {', '.join(KV_FORMATS)}", "kv_event_format")
        if self.replay_port is not None and self.port is None:
            raise ConfigError("needs --kv-events-port as well", "kv_replay_port")
        if self.buffer_steps < 1:
            raise ConfigError("must be >= 1", "kv_buffer_steps")

    @property
    def enabled(self) -> bool:
        return self.port is not None


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Everything one simulated replica needs; built by the CLI or by tests."""

    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "sim-model"
    preset: str = DEFAULT_PRESET
    overrides: EngineOverrides = field(default_factory=EngineOverrides)
    lora_modules: tuple[str, ...] = ()
    """Adapters served from the start, ``NAME`` or ``NAME=PATH`` (the path is not read)."""
    runtime_lora_updating: bool = False
    """Serve ``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` (vLLM's
    ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``)."""
    time_scale: float = 1.0
    seed: int = 0
    default_max_tokens: int | None = None
    kv_events: KVEventSettings = field(default_factory=KVEventSettings)
    faults: FaultSettings = field(default_factory=FaultSettings)
    script: Script | None = None
    """Scripted chat replies (``--script FILE``, :mod:`pilothouse.servers.sim.script`)."""

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ConfigError("must be > 0", "time_scale")
        if self.default_max_tokens is not None and self.default_max_tokens < 1:
            raise ConfigError("must be >= 1", "default_max_tokens")
        names = self.lora_names
        if len(set(names)) != len(names) or self.model in names or "" in names:
            raise ConfigError(
                "adapter names must be unique and differ from --model", "lora_modules"
            )

    @property
    def lora_names(self) -> tuple[str, ...]:
        return tuple(lora_module_name(m) for m in self.lora_modules)

    def engine_config(self) -> EngineConfig:
        """The preset with the overrides applied; LoRA (modules or runtime loading) needs at
        least one slot, as vLLM's ``--max-loras`` defaults to 1."""
        overrides = self.overrides
        base = get_preset(self.preset)
        wants_lora = bool(self.lora_modules) or self.runtime_lora_updating
        if wants_lora and overrides.max_loras is None and base.max_loras == 0:
            overrides = replace(overrides, max_loras=1)
        try:
            return apply_overrides(base, overrides)
        except ValueError as exc:
            raise ConfigError(str(exc), "engine") from exc

    def kv_topic(self, port: int) -> str:
        topic = self.kv_events.topic
        return f"kv@{self.host}:{port}@{self.model}" if topic is None else topic

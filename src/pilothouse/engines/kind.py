"""What pilothouse knows about one engine kind, as data: the :class:`EngineKind` adapter.

Every question that depends on the engine kind (which path to probe, which Prometheus series
carry the load, how to start a replica locally, what its Kubernetes pod looks like, whether
and how it serves LoRA adapters) is answered by the kind's adapter, one module per kind in
:mod:`pilothouse.engines.kinds`; callers look it up with
:func:`pilothouse.engines.registry.engine_kind` and never compare engine names.

The pieces of behaviour, the local command line, what must be installed for it, and the
pod's arguments, are one-verb protocols (:class:`Launcher`, :class:`Prerequisites`,
:class:`PodArgs`); everything else is a frozen fact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pilothouse.config.fleet import ArgValue, ModelSpec
from pilothouse.engines.args import engine_args
from pilothouse.errors import ConfigError

ImageKind = Literal["vllm", "pilothouse"]


@dataclass(frozen=True, slots=True)
class MetricNames:
    """Prometheus series an engine publishes for the signals routing uses."""

    waiting: str
    running: str
    kv_cache_usage: str
    cache_config: str | None = None
    lora_info: str | None = None
    ttft_histogram: str | None = None  # seconds; ``_bucket`` series for quantiles
    block_size_label: str = "block_size"
    num_blocks_label: str = "num_gpu_blocks"


@dataclass(frozen=True, slots=True)
class LoraSupport:
    """How a kind serves LoRA adapters: flags at start, and vLLM's dynamic endpoints."""

    enable_flag: str  # added unless the Fleet's args set it
    repeat_modules: bool  # ``--lora-modules a --lora-modules b`` rather than one list
    load_path: str = "/v1/load_lora_adapter"
    unload_path: str = "/v1/unload_lora_adapter"

    def flags(self, model: ModelSpec) -> list[str]:
        """Flags that serve ``model.adapters`` from the start (``hf://`` becomes a Hub id)."""
        if not model.adapters:
            return []
        modules = [f"{a.name}={a.source.removeprefix('hf://')}" for a in model.adapters]
        given = {key.replace("_", "-") for key in model.args}
        out = [] if self.enable_flag in given else ["--" + self.enable_flag]
        if "lora-modules" in given:
            return out
        if self.repeat_modules:
            return out + [part for module in modules for part in ("--lora-modules", module)]
        return [*out, "--lora-modules", *modules]


@dataclass(frozen=True, slots=True)
class Resources:
    """What one replica asks for when the Fleet's ``resources`` leave it unsaid."""

    cpu: str = "250m"
    memory: str = "256Mi"
    gpus: bool = False  # one GPU per tensor x pipeline parallel rank
    cpu_arg: str | None = None  # an arg whose whole value is the cores used (``threads``)


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One container environment variable: a value, or an optional secret's key."""

    name: str
    value: str | None = None
    secret: tuple[str, str] | None = None  # (Secret name, key)


@dataclass(frozen=True, slots=True)
class ScratchVolume:
    """An ``emptyDir`` mounted in the container; in memory when ``memory_limit`` is set."""

    name: str
    mount_path: str
    memory_limit: str | None = None


@dataclass(frozen=True, slots=True)
class PodContext:
    """What a kind needs to write its container arguments on Kubernetes."""

    model: ModelSpec
    field: str  # the model's path in the Fleet, for errors (``models[2]``)
    args: Mapping[str, ArgValue]  # the Fleet's args, dashed, none the pod owns
    port: int
    kv_events_port: int
    kv_replay_port: int
    kv_topic: str
    cpu: str


class Launcher(Protocol):
    """Starts a replica as a local process."""

    def command(self, model: ModelSpec, host: str, port: int) -> list[str]:
        """The argv, before the Fleet's args, that serves ``model`` on ``host:port``."""
        ...


class Prerequisites(Protocol):
    """What this machine needs before a replica of the kind can start locally."""

    def check(self) -> None:
        """Return when it is all there; :class:`EngineError` saying what is missing and how
        to get it."""
        ...


class PodArgs(Protocol):
    """Writes the container's arguments of a rendered model-server pod."""

    def args(self, pod: PodContext) -> list[str]:
        """The container args, the Fleet's included, LoRA flags excepted."""
        ...


@dataclass(frozen=True, slots=True)
class PodHints:
    """What the Kubernetes renderer needs to know to write this kind's pod."""

    command: tuple[str, ...]
    args: PodArgs
    reserved_args: tuple[str, ...]  # args the rendered pod owns; refused in the Fleet
    image: ImageKind = "pilothouse"  # the fleet-wide image it runs by default
    kv_events: bool = False  # KV-event ports, POD_IP for the topic, prefix caching kept on
    probe_path: str = "/health"
    startup_failures: int = 30  # startup probe, every 10 s
    env: tuple[EnvVar, ...] = ()
    volumes: tuple[ScratchVolume, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineKind:
    """One engine kind's adapter; ``None`` fields mean the kind lacks that ability."""

    name: str
    health_path: str
    metric_names: MetricNames | None  # None: publishes no Prometheus metrics
    serves_concurrently: bool
    metrics_path: str | None = None
    lora: LoraSupport | None = None
    launcher: Launcher | None = None  # None: not launched; the Fleet gives endpoints
    prerequisites: Prerequisites | None = None  # None: nothing beyond pilothouse itself
    pod: PodHints | None = None  # None: not rendered for Kubernetes
    resources: Resources = field(default_factory=Resources)
    builtin_tokenizer: bool = False  # prompts tokenized as pilothouse's dummy tokenizer does
    request_priority: Callable[[int], int] | None = None
    """The kind's ``priority`` request field for a gateway priority (vLLM's runs the other
    way round); ``None``: the kind takes no per-request priority."""

    def launch_command(self, model: ModelSpec, host: str, port: int) -> list[str]:
        """The full argv of one local replica; :class:`ConfigError` if it is not launched."""
        if self.launcher is None:
            raise ConfigError(
                f"engine '{self.name}' cannot be launched locally; give 'endpoints' instead",
                path="models.engine",
            )
        base = self.launcher.command(model, host, port)
        return [*base, *engine_args(model.args), *self.lora_flags(model)]

    def check_prerequisites(self) -> None:
        """:class:`EngineError` if a replica of this kind cannot start on this machine."""
        if self.prerequisites is not None:
            self.prerequisites.check()

    def pod_args(self, pod: PodContext) -> list[str]:
        """The rendered container's args; :class:`ConfigError` if it is not rendered."""
        if self.pod is None:
            raise ConfigError(f"engine '{self.name}' is not rendered for Kubernetes")
        return [*self.pod.args.args(pod), *self.lora_flags(pod.model)]

    def lora_flags(self, model: ModelSpec) -> list[str]:
        return [] if self.lora is None else self.lora.flags(model)

    def gpus(self, model: ModelSpec) -> int:
        """GPUs per replica unless the Fleet says: tensor x pipeline parallel size, or 0."""
        if not self.resources.gpus:
            return 0
        size = 1
        for key in ("tensor-parallel-size", "pipeline-parallel-size"):
            size *= int(model.args.get(key, model.args.get(key.replace("-", "_"), 1)))
        return size

"""Autoscaling policies ``bench sim --autoscale`` compares: built-in names or YAML files.

Built-ins (bounds 1..``--replicas``, 60 s scale-down window, 10 s metric window):

- ``fixed``: no autoscaler, ``--replicas`` replicas all the time (the baseline);
- ``queue-depth``: 16 requests outstanding per replica;
- ``kv-cache``: 60 % mean KV-cache usage;
- ``ttft``: p90 TTFT at half the ``--ttft-slo`` (1 s without one).

A YAML file holds one ``autoscaling`` block of the Fleet spec (``docs/configuration.md``),
e.g. ``{min_replicas: 0, max_replicas: 8, metric: queue_depth, target: 24,
idle_timeout_s: 120}``; it is reported under the file's stem.
"""

from __future__ import annotations

from pathlib import Path

from pilothouse.config.autoscaling import AutoscalingSpec
from pilothouse.config.loader import read_yaml, validate_model
from pilothouse.errors import ConfigError

BUILTIN_AUTOSCALE = ("fixed", "queue-depth", "kv-cache", "ttft")
_COMMON = {"min_replicas": 1, "scale_down_stabilization_s": 60.0, "window_s": 10.0}


def autoscale_label(name: str) -> str:
    return name if name in BUILTIN_AUTOSCALE else Path(name).stem


def resolve_autoscale(name: str, replicas: int, ttft_slo_s: float | None) -> AutoscalingSpec | None:
    """The policy named ``name`` (``None`` for ``fixed``); ConfigError when unknown or bad."""
    if name == "fixed":
        return None
    fields: dict[str, object]
    if name == "queue-depth":
        fields = {"metric": "queue_depth", "target": 16}
    elif name == "kv-cache":
        fields = {"metric": "kv_cache_usage", "target": 0.6}
    elif name == "ttft":
        fields = {"metric": "ttft", "target": (ttft_slo_s or 2.0) / 2}
    elif name.endswith((".yaml", ".yml")):
        return validate_model(AutoscalingSpec, read_yaml(name), source=name)
    else:
        known = ", ".join(BUILTIN_AUTOSCALE)
        raise ConfigError(f"unknown autoscaling policy {name!r} (built-in: {known}, or a YAML)")
    return AutoscalingSpec.model_validate({**_COMMON, "max_replicas": replicas, **fields})

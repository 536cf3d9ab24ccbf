"""The scheduler: profile handler → filters → weighted scorers → picker.

Pure, synchronous and clock-injected; see ``docs/scheduling.md``. The main entry points::

    from pilothouse.scheduling import build_scheduler, resolve_config

    scheduler = build_scheduler(resolve_config("default"), clock)
    result = scheduler.schedule(request, endpoints)
"""

from __future__ import annotations

from pilothouse.scheduling.config import (
    PluginRef,
    PluginSpec,
    ProfileSpec,
    SchedulerConfig,
    builtin_config,
    builtin_config_names,
    load_scheduler_config,
    resolve_config,
)
from pilothouse.scheduling.context import PluginContext, PluginFactory
from pilothouse.scheduling.registry import PluginRegistry, default_registry
from pilothouse.scheduling.scheduler import Scheduler, build_scheduler, validate_config
from pilothouse.scheduling.types import (
    Endpoint,
    EndpointMetrics,
    ProfileResult,
    SchedulingRequest,
    SchedulingResult,
    ScoredEndpoint,
)

__all__ = [
    "Endpoint",
    "EndpointMetrics",
    "PluginContext",
    "PluginFactory",
    "PluginRef",
    "PluginRegistry",
    "PluginSpec",
    "ProfileResult",
    "ProfileSpec",
    "Scheduler",
    "SchedulerConfig",
    "SchedulingRequest",
    "SchedulingResult",
    "ScoredEndpoint",
    "build_scheduler",
    "builtin_config",
    "builtin_config_names",
    "default_registry",
    "load_scheduler_config",
    "resolve_config",
    "validate_config",
]

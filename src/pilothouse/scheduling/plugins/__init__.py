"""The built-in plugins, registered explicitly by type name (no import-time side effects)."""

from __future__ import annotations

from pilothouse.scheduling.context import PluginFactory
from pilothouse.scheduling.plugins.filters.max_in_flight import MaxInFlightFilter
from pilothouse.scheduling.plugins.filters.not_saturated import NotSaturatedFilter
from pilothouse.scheduling.plugins.filters.ready import ReadyFilter
from pilothouse.scheduling.plugins.filters.role import RoleFilter
from pilothouse.scheduling.plugins.pickers.cache_aware_sglang import CacheAwareSglangPicker
from pilothouse.scheduling.plugins.pickers.max_score import MaxScorePicker
from pilothouse.scheduling.plugins.pickers.random_picker import RandomPicker
from pilothouse.scheduling.plugins.pickers.round_robin import RoundRobinPicker
from pilothouse.scheduling.plugins.profiles.pd import PdProfileHandler
from pilothouse.scheduling.plugins.profiles.single import SingleProfileHandler
from pilothouse.scheduling.plugins.scorers.approx_prefix import ApproxPrefixScorer
from pilothouse.scheduling.plugins.scorers.estimated_ttft import EstimatedTtftScorer
from pilothouse.scheduling.plugins.scorers.kv_cache_usage import KvCacheUsageScorer
from pilothouse.scheduling.plugins.scorers.least_requests import LeastRequestsScorer
from pilothouse.scheduling.plugins.scorers.lora_affinity import LoraAffinityScorer
from pilothouse.scheduling.plugins.scorers.precise_prefix import PrecisePrefixScorer
from pilothouse.scheduling.plugins.scorers.queue_depth import QueueDepthScorer
from pilothouse.scheduling.plugins.scorers.session_affinity import SessionAffinityScorer
from pilothouse.scheduling.plugins.scorers.slo_aware import SloAwareScorer
from pilothouse.scheduling.plugins.scorers.sticky_prefix import StickyPrefixScorer

__all__ = [
    "ApproxPrefixScorer",
    "CacheAwareSglangPicker",
    "EstimatedTtftScorer",
    "KvCacheUsageScorer",
    "LeastRequestsScorer",
    "LoraAffinityScorer",
    "MaxInFlightFilter",
    "MaxScorePicker",
    "NotSaturatedFilter",
    "PdProfileHandler",
    "PrecisePrefixScorer",
    "QueueDepthScorer",
    "RandomPicker",
    "ReadyFilter",
    "RoleFilter",
    "RoundRobinPicker",
    "SessionAffinityScorer",
    "SingleProfileHandler",
    "SloAwareScorer",
    "StickyPrefixScorer",
    "builtin_factories",
]


def builtin_factories() -> dict[str, PluginFactory]:
    """Every built-in plugin type and its factory: the one place a type name is bound."""
    return {
        "ready": ReadyFilter.create,
        "not-saturated": NotSaturatedFilter.create,
        "max-in-flight": MaxInFlightFilter.create,
        "least-requests": LeastRequestsScorer.create,
        "queue-depth": QueueDepthScorer.create,
        "estimated-ttft": EstimatedTtftScorer.create,
        "sticky-prefix": StickyPrefixScorer.create,
        "slo-aware": SloAwareScorer.create,
        "kv-cache-usage": KvCacheUsageScorer.create,
        "approx-prefix": ApproxPrefixScorer.create,
        "precise-prefix": PrecisePrefixScorer.create,
        "max-score": MaxScorePicker.create,
        "random": RandomPicker.create,
        "round-robin": RoundRobinPicker.create,
        "cache-aware-sglang": CacheAwareSglangPicker.create,
        "single": SingleProfileHandler.create,
        # affinity, roles and prefill/decode disaggregation
        "session-affinity": SessionAffinityScorer.create,
        "lora-affinity": LoraAffinityScorer.create,
        "role": RoleFilter.create,
        "pd-disaggregation": PdProfileHandler.create,
    }

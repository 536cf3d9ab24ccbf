"""The scheduler config a ``bench sim`` policy runs with, given the engines it routes to.

Engines with a CPU tier of the KV cache (the ``-offload`` presets, ``--cpu-kv-gib``) make a
prefix hit worth what it saves: a block on the GPU its whole prefill, a block offloaded to
host memory its prefill minus the reload over PCIe. The built-in ``default`` config is then
run **tier-aware**, as a deployment would configure it for such engines: its
``approx-prefix`` scorer gets the parameters that mirror the engine's two tiers
(:meth:`~pilothouse.sim.config.EngineConfig.approx_prefix_tiers`: a recent LRU the size of
the GPU cache, an offloaded LRU the size of the CPU tier, the preset's tier costs) and hashes
the whole prompt, up to the engine's context length (by default it sees the first 4,096
tokens, which on long-context traffic is only a document's head), and any ``precise-prefix``
scorer the tier costs. Without a CPU tier, and for every other policy
(the baselines are the routers as they ship), the config is returned unchanged, so those
runs are exactly what they were.
"""

from __future__ import annotations

from pilothouse.scheduling import SchedulerConfig, resolve_config
from pilothouse.sim.config import EngineConfig

TIER_AWARE_POLICIES = ("default",)
"""The built-in configs that are given the engine's tiers when it has a CPU tier."""


def scheduler_for(policy: str, engine: EngineConfig) -> SchedulerConfig:
    """``policy`` resolved (a built-in name or a YAML path), tier-aware where it applies."""
    config = resolve_config(policy)
    if policy not in TIER_AWARE_POLICIES or engine.num_cpu_blocks == 0:
        return config
    return tier_aware(config, engine)


def tier_aware(config: SchedulerConfig, engine: EngineConfig) -> SchedulerConfig:
    """``config`` with its prefix scorers given ``engine``'s tiers (parameters the config
    sets itself win)."""
    plugins = []
    for spec in config.plugins:
        if spec.type == "approx-prefix":
            tiers = {**engine.approx_prefix_tiers(), "max_prefix_blocks": _whole_prompt(engine)}
        elif spec.type == "precise-prefix":
            tiers = {"tier_costs": engine.tier_costs()}
        else:
            plugins.append(spec)
            continue
        plugins.append(spec.model_copy(update={"parameters": {**tiers, **spec.parameters}}))
    return config.model_copy(update={"plugins": plugins})


def _whole_prompt(engine: EngineConfig, chars_per_block: int = 64, chars_per_token: int = 4) -> int:
    """``approx-prefix`` blocks that cover the longest prompt the engine takes (its default,
    256 blocks of 64 characters, sees only the first 4,096 tokens: a long document's head,
    whose tier says little about where the rest of it lives)."""
    tokens = chars_per_block // chars_per_token
    return max(256, -(-engine.max_model_len // tokens))

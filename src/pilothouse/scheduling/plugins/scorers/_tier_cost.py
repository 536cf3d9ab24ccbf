"""What a prefix hit saves, by tier: the prefix scorers' shared cost model.

A block the engine holds on the GPU saves its whole prefill. A block held only in an offload
tier (vLLM's CPU offloading connector, LMCache) must first be reloaded over PCIe: it saves
its prefill minus the reload, and one reload pays a fixed latency. Per request, with ``p``
the prefill time of one token, ``r`` the reload time of one token and ``L`` the fixed
latency, a prompt of ``T`` tokens whose first ``g`` tokens are on the GPU and next ``c``
offloaded saves::

    g·p + max(0, c·(p - r) - L)        of the    T·p    a cold prefill costs

and the score is that ratio, in [0, 1]. Prefill is taken as linear in tokens (the attention
term is left out), so that with nothing offloaded the score is exactly the matched fraction
``g / T`` the scorers have always returned: a fleet without a CPU tier routes as before. The
figures come from the engine (the simulator's presets carry them:
``EngineConfig.tier_costs()``); the defaults are Llama-3.1-8B on an H100 with PCIe Gen5.
"""

from __future__ import annotations

from pydantic import Field

from pilothouse.scheduling.validation import ParametersModel


class TierCostParameters(ParametersModel):
    prefill_s_per_token: float = Field(default=27e-6, gt=0.0)
    """Prefill compute time of one prompt token (Llama-3.1-8B, H100: 27 µs)."""
    offload_load_s_per_token: float = Field(default=2.62144e-6, ge=0.0)
    """Time to reload one token's KV from the offload tier (128 KiB at 50 GB/s: 2.6 µs)."""
    offload_load_latency_s: float = Field(default=0.001, ge=0.0)
    """Fixed cost of one reload (transfer launch and synchronisation)."""


def saved_fraction(
    gpu: float, offloaded: float, prompt_tokens: int, costs: TierCostParameters
) -> float:
    """The share of the prompt's prefill a hit saves (see the module docstring).

    ``gpu`` and ``offloaded`` are the fractions of the prompt's tokens hit in each tier; a
    ``prompt_tokens`` of 0 (unknown length) leaves the fixed latency out.
    """
    if offloaded <= 0.0:
        return gpu
    per_token = costs.prefill_s_per_token
    gain = offloaded * (1.0 - costs.offload_load_s_per_token / per_token)
    if prompt_tokens > 0:
        gain -= costs.offload_load_latency_s / (prompt_tokens * per_token)
    return min(1.0, gpu + max(0.0, gain))

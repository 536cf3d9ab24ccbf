"""The discrete-event simulation and a live run agree on a small scenario (issue 3).

Four ``engine sim`` replicas (real processes) behind pilothouse's gateway (a real process,
the ``default`` scheduler), driven by ``bench live``'s load generator; the same workload,
policy, preset, replica count, QPS and seed simulated by ``bench sim``'s code in virtual
time. TTFT p50 must agree within 15 % and output throughput within 10 %.

Why this scenario is robust on a busy 2-core machine:

- time scale 0.15 (slow motion): one simulated engine step (~6.5 ms on the H100 preset)
  lasts ~43 wall ms, so the HTTP hops, the gateway and the event loops' wake-up delays
  (a few wall ms together) are ~1 ms of simulated time;
- every request has an uncached part (each of the 200 users asks one new 800-token
  question; only the 4 tenants' 2,000-token system prompts are reused), so TTFT p50 is a
  ~34 ms prefill step rather than a ~10 ms cached one that such offsets would dominate;
- moderate load (40 simulated QPS on four replicas: a few sequences per batch, no
  queueing), 160 requests, and only ~160 streamed chunks per wall second.

The whole test takes about 35 s. No other wall-clock threshold is checked.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pilothouse.bench.live.fleet import SimFleetSpec, run_launched
from pilothouse.bench.live.run import Level, LiveSettings
from pilothouse.bench.sim.cli import SimPlan, run_policy
from pilothouse.bench.workloads import ArrivalSpec
from pilothouse.sim.cluster_types import RunMetrics
from tests.e2e.procs import alive, children

pytestmark = pytest.mark.e2e

PRESET = "llama-3.1-8b-h100"
REPLICAS = 4
POLICY = "default"
TIME_SCALE = 0.15
QPS = 40.0
REQUESTS = 160
SEED = 0
WORKLOAD = (
    ("groups", "4"),
    ("users_per_group", "50"),
    ("system_prompt_tokens", "2000"),
    ("question_tokens", "800"),
    ("output_tokens", "32"),
)


def _plan() -> SimPlan:
    return SimPlan(
        workload="b2b-saas",
        overrides=WORKLOAD,
        arrivals=ArrivalSpec("poisson"),
        preset=PRESET,
        replicas=REPLICAS,
        requests=REQUESTS,
        seed=SEED,
        scrape_interval_s=0.05,
        levels=(QPS,),
    )


async def _live(work_dir: Path) -> RunMetrics:
    fleet = SimFleetSpec(REPLICAS, PRESET, TIME_SCALE)
    settings = LiveSettings(requests=REQUESTS, time_scale=TIME_SCALE, timeout_s=60.0)
    runs = await asyncio.wait_for(
        run_launched(
            fleet,
            [POLICY],
            settings,
            _plan().build_workload(),
            [Level("qps", QPS)],
            work_dir,
            scrape_interval_s=0.05,
        ),
        timeout=240,
    )
    assert len(runs) == 1
    assert runs[0].first_error is None
    return runs[0].run.result.metrics


async def test_simulation_and_live_agree(tmp_path: Path) -> None:
    simulated = run_policy(_plan(), POLICY)[0].result.metrics
    before = set(children(os.getpid()))
    live = await _live(tmp_path)
    leftovers = [pid for pid in set(children(os.getpid())) - before if alive(pid)]
    assert not leftovers, f"processes left running: {leftovers}"

    summary = f"simulated {simulated}\nlive      {live}"
    assert simulated.completed == live.completed == REQUESTS, summary
    assert simulated.failed == live.failed == 0, summary
    assert live.cache_hit_rate > 0, summary  # read from the engines' metrics
    ttft_ratio = live.ttft_p50_s / simulated.ttft_p50_s
    throughput_ratio = live.output_tok_s / simulated.output_tok_s
    assert abs(ttft_ratio - 1) <= 0.15, f"TTFT p50 ratio {ttft_ratio:.3f}\n{summary}"
    assert abs(throughput_ratio - 1) <= 0.10, f"throughput ratio {throughput_ratio:.3f}\n{summary}"

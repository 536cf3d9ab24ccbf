#!/usr/bin/env bash
# Compare pilothouse's gateway with the PyPI vllm-router (Rust) in front of the same fleet.
#
# Starts REPLICAS `pilothouse engine sim` replicas once, then, one after the other, puts in
# front of them: vllm-router --policy cache_aware, vllm-router --policy round_robin,
# pilothouse's gateway with the `default` scheduler and with `round-robin`; runs
# `bench live` (open loop, each QPS level) through each, resets the engines' prefix caches
# before every level, and writes one combined report (results.json, report.md, plots) to
# OUT. Every process it started is stopped at the end, also on Ctrl-C or an error.
#
# Installs nothing: it needs pilothouse and vllm-router in the same environment:
#   pip install -e '.[peers,bench]'     # vllm-router==0.1.17 (and matplotlib for plots)
#
# Usage: scripts/peer-vllm-router.sh [extra `bench live` options...]
# Environment (defaults in brackets): PYTHON [python3; .venv/bin/python when present],
#   OUT [bench-out/peers], REPLICAS [4], PRESET [llama-3.1-8b-h100], BLOCKS [1024: KV
#   blocks of 16 tokens per replica, small enough that blind routing thrashes],
#   TIME_SCALE [0.5], QPS [20,45], REQUESTS [300], SEED [0].
# The workload is the llm-d "B2B SaaS" shape scaled down: 8 tenants x 3,000-token system
# prompts, 5 users each with a 300-token question, 16-token answers (about 36 k distinct
# prompt tokens against 16 k cached tokens per replica: fits the fleet, not one replica).
set -euo pipefail

cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! "$PYTHON" -c 'import pilothouse' 2>/dev/null; then
  echo "pilothouse is not installed for $PYTHON (pip install -e '.[peers,bench]')" >&2
  exit 2
fi
ROUTER_DIR="$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")"
if [[ ! -x "$ROUTER_DIR/vllm-router" ]] && ! command -v vllm-router >/dev/null; then
  echo "vllm-router is not installed: pip install 'pilothouse[peers]'" >&2
  exit 2
fi

exec "$PYTHON" -m pilothouse.bench.live_cli \
  --launch-sim "${REPLICAS:-4}" \
  --preset "${PRESET:-llama-3.1-8b-h100}" \
  --engine-arg "num-gpu-blocks-override=${BLOCKS:-1024}" \
  --time-scale "${TIME_SCALE:-0.5}" \
  --policies vllm-router:cache_aware,vllm-router:round_robin,default,round-robin \
  --workload b2b-saas \
  --set groups=8 --set users_per_group=5 --set system_prompt_tokens=3000 \
  --set question_tokens=300 --set output_tokens=16 \
  --qps "${QPS:-20,45}" \
  --requests "${REQUESTS:-300}" \
  --seed "${SEED:-0}" \
  --out "${OUT:-bench-out/peers}" \
  "$@"

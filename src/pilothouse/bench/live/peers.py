"""Peer routers that ``bench live --launch-sim`` can put in front of the same engines.

A policy named ``vllm-router:POLICY`` runs the PyPI ``vllm-router`` (0.1.17, a Rust binary
in the wheel; ``pip install 'pilothouse[peers]'``) with ``--policy POLICY`` instead of
pilothouse's gateway, e.g. ``vllm-router:cache_aware`` (the SGLang cache-aware rule) or
``vllm-router:round_robin``. Nothing is installed at run time: a missing binary is an error
that says how to install it. Its flags are the defaults except loopback, a free port, a
free Prometheus port (its default, 29000, may be taken) and warning-level logs.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from pilothouse.errors import ConfigError

VLLM_ROUTER = "vllm-router"
VLLM_ROUTER_POLICIES = (
    "random",
    "round_robin",
    "cache_aware",
    "power_of_two",
    "consistent_hash",
    "sticky_least_loaded",
)
_PREFIX = f"{VLLM_ROUTER}:"


def is_peer(policy: str) -> bool:
    return policy.startswith(_PREFIX)


def check_peer(policy: str) -> None:
    """Fail early on an unknown peer policy or a missing binary."""
    name = policy.removeprefix(_PREFIX)
    if name not in VLLM_ROUTER_POLICIES:
        known = ", ".join(VLLM_ROUTER_POLICIES)
        raise ConfigError(f"unknown vllm-router policy {name!r} (known: {known})", "policies")
    router_binary()


def router_binary() -> str:
    """``vllm-router`` next to this interpreter (a virtualenv) or on PATH."""
    beside = Path(sys.executable).parent / VLLM_ROUTER
    if beside.is_file():
        return str(beside)
    found = shutil.which(VLLM_ROUTER)
    if found is None:
        raise ConfigError(
            "vllm-router is not installed: pip install 'pilothouse[peers]' (or vllm-router)",
            "policies",
        )
    return found


def peer_command(
    policy: str, port: int, worker_urls: Sequence[str], metrics_port: int
) -> list[str]:
    """The argv of a peer router on 127.0.0.1:``port`` over ``worker_urls``."""
    check_peer(policy)
    return [
        router_binary(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--worker-urls",
        *worker_urls,
        "--policy",
        policy.removeprefix(_PREFIX),
        "--prometheus-host",
        "127.0.0.1",
        "--prometheus-port",
        str(metrics_port),
        "--log-level",
        "warning",
    ]

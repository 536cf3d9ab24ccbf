"""Any other OpenAI-compatible server: probed on ``/v1/models``, load tracked by the gateway.

Also what a Kubernetes pod labelled with an engine pilothouse has no adapter for is taken as
(:data:`pilothouse.endpoints.kube_pods.UNKNOWN_ENGINE`).
"""

from __future__ import annotations

from pilothouse.engines.kind import EngineKind

OPENAI = EngineKind(
    name="openai",
    health_path="/v1/models",
    metric_names=None,
    serves_concurrently=True,
)

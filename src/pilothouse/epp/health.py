"""The picker's gRPC health service (``grpc.health.v1.Health``), served on its own port.

Service names, as the endpoint picker protocol defines them:

* ``liveness``: the process is up (SERVING from the start);
* ``readiness``: endpoint discovery has reported the pool and the first health probe round
  has finished;
* ``envoy.service.ext_proc.v3.ExternalProcessor``: same as readiness; Envoy's active gRPC
  health checks of the picker's cluster use this name.

On shutdown every service turns NOT_SERVING before the servers stop accepting streams.
"""

from __future__ import annotations

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

LIVENESS = "liveness"
READINESS = "readiness"
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class EppHealth:
    """Owns the health servicer and the meaning of each service name."""

    def __init__(self) -> None:
        self.servicer = health_aio.HealthServicer()
        self.ready = False

    async def start(self) -> None:
        await self.servicer.set(LIVENESS, _SERVING)
        await self.set_ready(False)

    async def set_ready(self, ready: bool) -> None:
        self.ready = ready
        status = _SERVING if ready else _NOT_SERVING
        await self.servicer.set(READINESS, status)
        await self.servicer.set(EXT_PROC_SERVICE, status)

    async def shutdown(self) -> None:
        """Everything NOT_SERVING from now on (later ``set_ready`` calls are ignored)."""
        self.ready = False
        await self.servicer.enter_graceful_shutdown()

"""The one routing path shared by the standalone gateway and the endpoint picker.

Both front doors turn a parsed request into a :class:`SchedulingRequest`, ask the same
:class:`Scheduler` over the same :class:`EndpointPool` snapshots, and count the request in
flight on the chosen replica until it ends. Only the transport around it differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from pilothouse.endpoints.pool import EndpointPool
from pilothouse.errors import NoEndpointAvailable
from pilothouse.openai.requests import ParsedRequest
from pilothouse.scheduling.scheduler import Scheduler
from pilothouse.scheduling.types import Endpoint, SchedulingRequest

HeaderLookup = Callable[[str], str | None]

#: Where the tenant (fairness id) is read from, first present wins: ours, then llm-d's.
TENANT_HEADERS = (
    "x-pilothouse-tenant",
    "x-llm-d-inference-fairness-id",
    "x-gateway-inference-fairness-id",
)
#: Where the priority is read from: an integer, or an objective name mapped to one.
PRIORITY_HEADERS = (
    "x-pilothouse-priority",
    "x-llm-d-inference-objective",
    "x-gateway-inference-objective",
)


@dataclass(frozen=True, slots=True)
class Pick:
    """Where a request goes, and the headers the scheduler wants sent with it."""

    endpoint: Endpoint
    fallbacks: tuple[Endpoint, ...]
    headers: dict[str, str]
    uncached_tokens: int | None = None


def scheduling_request(
    parsed: ParsedRequest,
    header: HeaderLookup,
    request_id: str,
    objectives: Mapping[str, int] | None = None,
) -> SchedulingRequest:
    """What routing needs from a request: body fields plus the routing headers.

    ``lora`` is left unset here: whether ``model`` names a LoRA adapter depends on the
    endpoints, so :meth:`Router.pick` decides it (:func:`with_adapter`).
    """
    return SchedulingRequest(
        request_id=request_id,
        model=parsed.model,
        prompt=parsed.prompt,
        prompt_tokens=parsed.prompt_tokens,
        max_tokens=parsed.max_tokens,
        stream=parsed.stream,
        session_id=header("x-session-id") or parsed.user,
        tenant=request_tenant(header),
        priority=request_priority(header, objectives or {}),
    )


def request_tenant(header: HeaderLookup) -> str | None:
    """The first non-empty tenant header, if any."""
    for name in TENANT_HEADERS:
        value = header(name)
        if value:
            return value
    return None


def request_priority(header: HeaderLookup, objectives: Mapping[str, int]) -> int:
    """The first priority header that is an integer or a known objective name; else 0."""
    for name in PRIORITY_HEADERS:
        value = header(name)
        if value is None:
            continue
        value = value.strip()
        if value in objectives:
            return objectives[value]
        try:
            return int(value)
        except ValueError:
            continue
    return 0


def with_adapter(request: SchedulingRequest, endpoints: Sequence[Endpoint]) -> SchedulingRequest:
    """``request`` with ``lora`` set when an engine serves its ``model`` as a LoRA adapter.

    vLLM serves an adapter under its own model name and reports the adapters it runs or
    queues in ``vllm:lora_requests_info``: a model listed there by any candidate is an
    adapter. One that no engine has loaded yet is routed as a plain model; once it runs
    somewhere, ``lora-affinity`` keeps its requests there.
    """
    if request.lora is not None:
        return request
    model = request.model
    for endpoint in endpoints:
        metrics = endpoint.metrics
        if model in metrics.running_loras or model in metrics.waiting_loras:
            return replace(request, lora=model)
    return request


class Router:
    """Schedules requests over a pool and keeps the pool's in-flight counts exact."""

    def __init__(
        self,
        pool: EndpointPool,
        scheduler: Scheduler,
        on_decision: Callable[[float], None] | None = None,
        on_finished: Callable[[Endpoint], None] | None = None,
    ) -> None:
        self.pool = pool
        self.scheduler = scheduler
        self._on_decision = on_decision
        self._on_finished = on_finished
        # (endpoint, request id) -> prefill tokens still counted in that endpoint's backlog
        self._backlog: dict[tuple[str, str], int] = {}

    def pick(
        self,
        request: SchedulingRequest,
        pool_key: str | None = None,
        exclude: frozenset[str] = frozenset(),
        only: frozenset[str] | None = None,
    ) -> Pick:
        """Schedule among ready replicas of ``pool_key`` (default: the request's model).

        ``only`` narrows the candidates to those addresses (an endpoint-picker subset hint).
        """
        key = pool_key or request.model
        candidates = self.pool.candidates(key, exclude)
        if only is not None:
            candidates = [e for e in candidates if e.address in only]
        if not candidates:
            raise NoEndpointAvailable(f"no ready replica of model '{request.model}'")
        started = time.perf_counter()
        result = self.scheduler.schedule(with_adapter(request, candidates), candidates)
        if self._on_decision is not None:
            self._on_decision(time.perf_counter() - started)
        return Pick(result.target, result.fallbacks, dict(result.headers), result.uncached_tokens)

    def started(
        self, endpoint: Endpoint, request: SchedulingRequest, uncached_tokens: int | None = None
    ) -> None:
        """Count ``request`` in flight on ``endpoint`` with its prefill backlog.

        ``uncached_tokens`` is the scheduler's estimate (``Pick.uncached_tokens``); without
        one, the whole prompt counts.
        """
        tokens = request.prompt_tokens if uncached_tokens is None else uncached_tokens
        self._backlog[(endpoint.name, request.request_id)] = tokens
        self.pool.acquire(endpoint.name, tokens)

    def first_token(self, endpoint: Endpoint, request: SchedulingRequest) -> None:
        """The first byte of the answer arrived: the replica has prefilled the prompt."""
        tokens = self._backlog.pop((endpoint.name, request.request_id), None)
        if tokens is not None:
            self.pool.prefilled(endpoint.name, tokens)

    def finished(self, endpoint: Endpoint, request: SchedulingRequest) -> None:
        """The request ended: its replica has room again (``on_finished`` is told)."""
        tokens = self._backlog.pop((endpoint.name, request.request_id), None)
        self.pool.release(endpoint.name, tokens)
        if self._on_finished is not None:
            self._on_finished(endpoint)

"""The span of one model request through a front door: ``{operation} {model}``.

One span per request, from the moment its ticket opens to the end of its answer, following
the GenAI semantic conventions for an inference call: kind ``CLIENT`` (the gateway calls
the model on its client's behalf; the engine's own spans become its children through the
``traceparent`` it receives), ``gen_ai.operation.name``, ``gen_ai.request.model``,
``gen_ai.response.model``, usage tokens, and ``server.address`` / ``server.port`` of the
replica that served it. The routing decision rides on it under ``pilothouse.``: profile,
pick and runner-up with their scores (and, with ``decision_detail``, each scorer's),
the cache-hit estimate and the time spent waiting.

The routing pipeline calls :meth:`RequestTrace.scheduled`, :meth:`~RequestTrace.waited` and
:meth:`~RequestTrace.sent`; the front door opens it (:meth:`Tracing.request
<pilothouse.telemetry.provider.Tracing.request>`), injects :meth:`~RequestTrace.headers`
upstream and calls :meth:`~RequestTrace.end` once.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.trace import Span, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pilothouse.scheduling.explain import Explanation, runner_up
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, SchedulingResult
from pilothouse.telemetry import names

#: What ``error.type`` says for a request that ended without an answer from the engine.
CANCELLED = "cancelled"

_W3C = TraceContextTextMapPropagator()  # stateless: W3C `traceparent` / `tracestate`


class RequestTrace:
    """One request's span and what the pipeline learns about it while it runs."""

    __slots__ = ("_ended", "_waited_s", "detail", "recording", "span")

    def __init__(self, span: Span, detail: bool) -> None:
        self.span = span
        self.recording = span.is_recording()
        """False for a request the sampler dropped: nothing is computed for it."""
        self.detail = detail and self.recording
        """Each scorer's score is wanted (``decision_detail`` on, and this one sampled)."""
        self._waited_s = 0.0
        self._ended = False

    def scheduled(
        self,
        result: SchedulingResult,
        explanation: Explanation | None,
        candidates: int,
        request: SchedulingRequest,
    ) -> None:
        """The scheduler's decision: profile, pick, runner-up, scores, cache estimate."""
        if not self.recording:
            return
        span = self.span
        profile = result.profiles[result.primary_profile]
        picked = profile.targets[0].name
        span.set_attribute(names.PROFILE, result.primary_profile)
        span.set_attribute(names.ENDPOINT, picked)
        span.set_attribute(names.CANDIDATES, candidates)
        if request.tenant is not None:
            span.set_attribute(names.TENANT, request.tenant)
        span.set_attribute(names.PRIORITY, request.priority)
        total = profile.scores.get(picked)
        if total is not None:
            span.set_attribute(names.ENDPOINT_SCORE, total)
        second = runner_up(profile)
        if second is not None:
            span.set_attribute(names.RUNNER_UP, second[0])
            span.set_attribute(names.RUNNER_UP_SCORE, second[1])
        if result.uncached_tokens is not None:
            cached = max(0, request.prompt_tokens - result.uncached_tokens)
            span.set_attribute(names.CACHED_TOKENS, cached)
        if explanation is not None:
            self._explain(explanation, picked, second[0] if second is not None else None)

    def _explain(self, explanation: Explanation, picked: str, second: str | None) -> None:
        span = self.span
        for scorer, value in explanation.scores.get(picked, {}).items():
            span.set_attribute(names.SCORER_PREFIX + scorer, value)
        if second is not None:
            for scorer, value in explanation.scores.get(second, {}).items():
                span.set_attribute(names.RUNNER_UP_SCORER_PREFIX + scorer, value)
        match = explanation.prefix_match.get(picked)
        if match is not None:
            span.set_attribute(names.PREFIX_MATCH, match)

    def waited(self, seconds: float) -> None:
        """Time spent held or queued before a decision (added up over waits)."""
        self._waited_s += seconds
        if self.recording:
            self.span.set_attribute(names.QUEUE_WAIT_MS, round(self._waited_s * 1000.0, 3))

    def sent(self, endpoint: Endpoint) -> None:
        """The request goes to ``endpoint`` (again on a retry: the last one wins)."""
        if not self.recording:
            return
        host, _, port = endpoint.address.rpartition(":")
        if not host:
            host, port = endpoint.address, ""
        span = self.span
        span.set_attribute(names.SERVER_ADDRESS, host.strip("[]"))
        if port.isdigit():
            span.set_attribute(names.SERVER_PORT, int(port))
        span.set_attribute(names.ENDPOINT, endpoint.name)
        span.set_attribute(names.PROVIDER, endpoint.engine)

    def headers(self) -> dict[str, str]:
        """W3C trace context for the engine: ``traceparent`` (and ``tracestate``)."""
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, context=set_span_in_context(self.span))
        return carrier

    def end(
        self,
        status: int,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        response_model: str | None = None,
        finish_reasons: Sequence[str] = (),
        ttft_s: float | None = None,
        error_type: str | None = None,
        attempts: int = 1,
    ) -> None:
        """The request's end: its usage and outcome; the span is ended (once)."""
        if self._ended:
            return
        self._ended = True
        span = self.span
        if self.recording:
            span.set_attribute(names.STATUS, status)
            if attempts > 1:
                span.set_attribute(names.ATTEMPTS, attempts)
            if input_tokens is not None:
                span.set_attribute(names.INPUT_TOKENS, input_tokens)
            if output_tokens is not None:
                span.set_attribute(names.OUTPUT_TOKENS, output_tokens)
            if response_model is not None:
                span.set_attribute(names.RESPONSE_MODEL, response_model)
            if finish_reasons:
                span.set_attribute(names.RESPONSE_FINISH_REASONS, list(finish_reasons))
            if ttft_s is not None:
                span.set_attribute(names.TIME_TO_FIRST_CHUNK, ttft_s)
            if error_type is None and status >= 400:
                error_type = str(status)
            if error_type is not None:
                span.set_attribute(names.ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR))
        span.end()

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

from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from pilothouse.scheduling.explain import Explanation, runner_up
from pilothouse.scheduling.types import Endpoint, SchedulingRequest, SchedulingResult
from pilothouse.telemetry import names


class RequestTrace:
    """One request's span and what the pipeline learns about it while it runs.

    Attributes are gathered in a dict and set on the span once, when it ends: one lock
    and one pass instead of one per attribute (the SDK locks each ``set_attribute``).
    """

    __slots__ = ("_attrs", "_ended", "_waited_s", "detail", "recording", "span")

    def __init__(self, span: Span, detail: bool) -> None:
        self.span = span
        self.recording = span.is_recording()
        """False for a request the sampler dropped: nothing is computed for it."""
        self.detail = detail and self.recording
        """Each scorer's score is wanted (``decision_detail`` on, and this one sampled)."""
        self._attrs: dict[str, AttributeValue] = {}
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
        attrs = self._attrs
        profile = result.profiles[result.primary_profile]
        picked = profile.targets[0].name
        attrs[names.PROFILE] = result.primary_profile
        attrs[names.CANDIDATES] = candidates
        if request.tenant is not None:
            attrs[names.TENANT] = request.tenant
        if request.priority:
            attrs[names.PRIORITY] = request.priority
        total = profile.scores.get(picked)
        if total is not None:
            attrs[names.ENDPOINT_SCORE] = total
        second = runner_up(profile)
        if second is not None:
            attrs[names.RUNNER_UP], attrs[names.RUNNER_UP_SCORE] = second
        if result.uncached_tokens is not None:
            attrs[names.CACHED_TOKENS] = max(0, request.prompt_tokens - result.uncached_tokens)
        if explanation is not None:
            self._explain(explanation, picked, second[0] if second is not None else None)

    def _explain(self, explanation: Explanation, picked: str, second: str | None) -> None:
        attrs = self._attrs
        for scorer, value in explanation.scores.get(picked, {}).items():
            attrs[names.SCORER_PREFIX + scorer] = value
        if second is not None:
            for scorer, value in explanation.scores.get(second, {}).items():
                attrs[names.RUNNER_UP_SCORER_PREFIX + scorer] = value
        match = explanation.prefix_match.get(picked)
        if match is not None:
            attrs[names.PREFIX_MATCH] = match

    def waited(self, seconds: float) -> None:
        """Time spent held or queued before a decision (added up over waits)."""
        self._waited_s += seconds
        self._attrs[names.QUEUE_WAIT_MS] = round(self._waited_s * 1000.0, 3)

    def sent(self, endpoint: Endpoint) -> None:
        """The request goes to ``endpoint`` (again on a retry: the last one wins)."""
        if not self.recording:
            return
        host, _, port = endpoint.address.rpartition(":")
        if not host:
            host, port = endpoint.address, ""
        attrs = self._attrs
        attrs[names.SERVER_ADDRESS] = host.strip("[]")
        if port.isdigit():
            attrs[names.SERVER_PORT] = int(port)
        attrs[names.ENDPOINT] = endpoint.name
        attrs[names.PROVIDER] = endpoint.engine

    def headers(self) -> dict[str, str]:
        """W3C trace context for the engine: ``traceparent`` (and ``tracestate``).

        Written from the span's context in the W3C format (``00-trace-span-flags``) rather
        than through a propagator: no context object is built on the request path.
        """
        context = self.span.get_span_context()
        traceparent = (
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
        )
        if context.trace_state:
            return {"traceparent": traceparent, "tracestate": context.trace_state.to_header()}
        return {"traceparent": traceparent}

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
        if not self.recording:
            span.end()
            return
        attrs = self._attrs
        attrs[names.STATUS] = status
        if attempts > 1:
            attrs[names.ATTEMPTS] = attempts
        if input_tokens is not None:
            attrs[names.INPUT_TOKENS] = input_tokens
        if output_tokens is not None:
            attrs[names.OUTPUT_TOKENS] = output_tokens
        if response_model is not None:
            attrs[names.RESPONSE_MODEL] = response_model
        if finish_reasons:
            attrs[names.RESPONSE_FINISH_REASONS] = list(finish_reasons)
        if ttft_s is not None:
            attrs[names.TIME_TO_FIRST_CHUNK] = ttft_s
        if error_type is None and status >= 400:
            error_type = str(status)
        if error_type is not None:
            attrs[names.ERROR_TYPE] = error_type
            span.set_status(Status(StatusCode.ERROR))
        span.set_attributes(attrs)
        span.end()

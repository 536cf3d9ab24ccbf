"""An in-process OTLP trace receiver for tests (yours and ours): gRPC or HTTP/protobuf.

No collector or Jaeger is needed to check what a process exports: start a receiver, point
``tracing.endpoint`` at :attr:`OtlpReceiver.endpoint`, and read the spans it got::

    with OtlpReceiver("grpc") as receiver:            # or "http/protobuf"
        spec = TracingSpec(endpoint=receiver.endpoint, protocol=receiver.protocol)
        ...                                           # run traffic; flush or stop the tracer
        span = receiver.wait_for(lambda s: s.name == "chat m")

It implements OTLP's ``TraceService/Export`` (``opentelemetry-proto`` messages) on a gRPC
server, or ``POST /v1/traces`` on a small threaded HTTP server, both bound to 127.0.0.1 on
a free port, in their own threads (exporters send from the SDK's worker thread, so the
receiver never depends on the test's event loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

Protocol = Literal["grpc", "http/protobuf"]
AttributeValue = str | bool | int | float | list[Any] | None


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One exported span, decoded: ids in lowercase hex as in ``traceparent``."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    """OTLP ``Span.SpanKind``: 1 internal, 2 server, 3 client."""
    attributes: dict[str, AttributeValue]
    status_code: int
    """OTLP ``Status.StatusCode``: 0 unset, 1 ok, 2 error."""
    resource: dict[str, AttributeValue] = field(default_factory=dict)
    scope: str = ""


class OtlpReceiver:
    """Collects every span exported to it; a context manager that starts and stops it."""

    def __init__(self, protocol: Protocol = "grpc", *, keep: bool = True) -> None:
        """``keep`` False: only count spans (a long benchmark run as a sink)."""
        self.protocol: Protocol = protocol
        self.keep = keep
        self.count = 0
        """Spans received so far."""
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Condition()
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""
        """Where to export to: ``http://127.0.0.1:PORT[/v1/traces]``."""

    def start(self) -> OtlpReceiver:
        if self.protocol == "grpc":
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
            add = trace_service_pb2_grpc.add_TraceServiceServicer_to_server
            add(_Servicer(self), server)  # type: ignore[no-untyped-call]
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            self._grpc = server
            self.endpoint = f"http://127.0.0.1:{port}"
        else:
            http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            http.daemon_threads = True
            self._http = http
            self._thread = threading.Thread(target=http.serve_forever, daemon=True)
            self._thread.start()
            self.endpoint = f"http://127.0.0.1:{http.server_address[1]}/v1/traces"
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order."""
        with self._lock:
            return list(self._spans)

    def wait_for(
        self, match: Callable[[ReceivedSpan], bool], timeout_s: float = 10.0
    ) -> ReceivedSpan:
        """The first span received that ``match`` accepts, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                for span in self._spans:
                    if match(span):
                        return span
                left = deadline - time.monotonic()
                if left <= 0:
                    names = [s.name for s in self._spans]
                    raise TimeoutError(f"no matching span in {timeout_s}s; received: {names}")
                self._lock.wait(left)

    def receive(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        """Decode one export request and keep its spans."""
        if not self.keep:
            counted = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            with self._lock:
                self.count += counted
            return
        decoded = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    decoded.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes=_attributes(span.attributes),
                            status_code=span.status.code,
                            resource=resource,
                            scope=scope_spans.scope.name,
                        )
                    )
        with self._lock:
            self._spans.extend(decoded)
            self.count += len(decoded)
            self._lock.notify_all()


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(  # noqa: N802 - the gRPC method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver.receive(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            request = trace_service_pb2.ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except Exception:  # a malformed body: OTLP answers 400
                self.send_response(400)
                self.end_headers()
                return
            receiver.receive(request)
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    return Handler


def _attributes(pairs: Any) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    for pair in pairs:
        assert isinstance(pair, KeyValue)
        out[pair.key] = _value(pair.value)
    return out


def _value(value: AnyValue) -> AttributeValue:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind is None:
        return None
    result: AttributeValue = getattr(value, kind)
    return result


READY_PREFIX = "otlp receiver ready: "
SPANS_LINE = "spans received: "


def main() -> None:
    """``python -m pilothouse.testing.otlp_receiver [--protocol P]``: a span sink that
    prints ``otlp receiver ready: URL``, counts spans until SIGTERM / SIGINT, then prints
    the count (``bench overhead --tracing`` exports to one)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--protocol", choices=["grpc", "http/protobuf"], default="http/protobuf")
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with OtlpReceiver(args.protocol, keep=False) as receiver:
        print(f"{READY_PREFIX}{receiver.endpoint}", flush=True)
        stop.wait()
        print(f"{SPANS_LINE}{receiver.count}", flush=True)


if __name__ == "__main__":
    main()

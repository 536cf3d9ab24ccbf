"""The endpoint picker protocol on the wire: reading Envoy's messages, building our answers.

Everything here is a pure function over the generated Envoy protos (``xds-protos``): the
header, metadata and attribute names of the Gateway API Inference Extension protocol
(proposal 004) and the ext_proc message shapes of FULL_DUPLEX_STREAMED mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2

DESTINATION = "x-gateway-destination-endpoint"
SERVED = "x-gateway-destination-endpoint-served"
SUBSET = "x-gateway-destination-endpoint-subset"
LB_NAMESPACE = "envoy.lb"
SUBSET_NAMESPACE = "envoy.lb.subset_hint"
EXT_PROC_FILTER = "envoy.filters.http.ext_proc"
UPSTREAM_ADDRESS = "upstream.address"
ENDPOINT_HEADER = "x-pilothouse-endpoint"
SYSTEM_PREFIX = "x-gateway-"
MAX_CHUNK = 62_000  # llm-d's chunk size: some proxies cap a body message at 64 KiB

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

ProcessingRequest = Any  # pb.ProcessingRequest: the generated classes carry no type hints
ProcessingResponse = Any  # pb.ProcessingResponse


def header_map(headers: Any) -> dict[str, str]:
    """Lower-cased names to values of an ``HttpHeaders.headers`` map (raw_value first)."""
    out: dict[str, str] = {}
    for header in headers.headers:
        value = header.raw_value.decode("latin-1") if header.raw_value else header.value
        out.setdefault(header.key.lower(), value)
    return out


def subset_hint(request: ProcessingRequest) -> frozenset[str] | None:
    """The ``ip:port`` list the data plane allows, or ``None`` when it sets no hint."""
    namespace = request.metadata_context.filter_metadata.get(SUBSET_NAMESPACE)
    if namespace is None or SUBSET not in namespace.fields:
        return None
    value = namespace.fields[SUBSET]
    if value.WhichOneof("kind") == "string_value":  # tolerate one address as a plain string
        return frozenset(a.strip() for a in value.string_value.split(",") if a.strip())
    if value.WhichOneof("kind") != "list_value":
        return frozenset()
    return frozenset(v.string_value for v in value.list_value.values if v.string_value)


def served_address(request: ProcessingRequest) -> str | None:
    """The endpoint that served the response, as the data plane reports it.

    The protocol's ``envoy.lb`` / ``x-gateway-destination-endpoint-served`` metadata comes
    first; plain Envoy can report it instead through ``response_attributes:
    [upstream.address]``.
    """
    lb = request.metadata_context.filter_metadata.get(LB_NAMESPACE)
    if lb is not None and SERVED in lb.fields:
        return str(lb.fields[SERVED].string_value) or None
    for attributes in (request.attributes, request.response_headers.attributes):
        struct = attributes.get(EXT_PROC_FILTER)
        if struct is not None and UPSTREAM_ADDRESS in struct.fields:
            return str(struct.fields[UPSTREAM_ADDRESS].string_value) or None
    return None


def _option(name: str, value: str) -> Any:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, raw_value=value.encode("latin-1")),
        append_action=_OVERWRITE,
    )


def header_mutation(set_headers: Mapping[str, str], remove: Iterable[str] = ()) -> Any:
    return pb.HeaderMutation(
        set_headers=[_option(k, v) for k, v in set_headers.items()],
        remove_headers=list(remove),
    )


def destination_metadata(destination: str) -> Any:
    """``{"envoy.lb": {"x-gateway-destination-endpoint": destination}}`` as a Struct."""
    struct = struct_pb2.Struct()
    struct.update({LB_NAMESPACE: {DESTINATION: destination}})
    return struct


def routed_headers(
    destination: str, set_headers: Mapping[str, str], remove: Iterable[str]
) -> ProcessingResponse:
    """The request-headers answer: the destination in a header and in dynamic metadata."""
    common = pb.CommonResponse(
        clear_route_cache=True,
        header_mutation=header_mutation({DESTINATION: destination, **set_headers}, remove),
    )
    return pb.ProcessingResponse(
        request_headers=pb.HeadersResponse(response=common),
        dynamic_metadata=destination_metadata(destination),
    )


def _chunks(body: bytes, end_of_stream: bool) -> list[tuple[bytes, bool]]:
    if not body:
        return [(b"", end_of_stream)]
    pieces = [body[i : i + MAX_CHUNK] for i in range(0, len(body), MAX_CHUNK)]
    return [(piece, end_of_stream and i == len(pieces) - 1) for i, piece in enumerate(pieces)]


def body_responses(body: bytes, end_of_stream: bool, *, request: bool) -> list[ProcessingResponse]:
    """The body streamed back in chunks of at most 62,000 bytes (FULL_DUPLEX_STREAMED)."""
    out = []
    for piece, last in _chunks(body, end_of_stream):
        mutation = pb.BodyMutation(
            streamed_response=pb.StreamedBodyResponse(body=piece, end_of_stream=last)
        )
        answer = pb.BodyResponse(response=pb.CommonResponse(body_mutation=mutation))
        out.append(
            pb.ProcessingResponse(request_body=answer)
            if request
            else pb.ProcessingResponse(response_body=answer)
        )
    return out


def response_headers(set_headers: Mapping[str, str]) -> ProcessingResponse:
    common = pb.CommonResponse(header_mutation=header_mutation(set_headers))
    return pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=common))


def trailers_response(*, request: bool) -> ProcessingResponse:
    if request:
        return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
    return pb.ProcessingResponse(response_trailers=pb.TrailersResponse())


def immediate(
    status: int, body: bytes, headers: Mapping[str, str], details: str
) -> ProcessingResponse:
    """A local reply Envoy sends to the client instead of forwarding the request."""
    reply = pb.ImmediateResponse(
        status=http_status_pb2.HttpStatus(code=status),
        headers=header_mutation({"content-type": "application/json", **headers}),
        body=body,
        details=details,
    )
    return pb.ProcessingResponse(immediate_response=reply)

"""Reading Envoy's messages: headers, the subset hint, the served endpoint."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("grpc")
pytest.importorskip("envoy.service.ext_proc.v3.external_processor_pb2")

from envoy.config.core.v3 import base_pb2

from pilothouse.epp import protocol
from tests.unit.epp import messages as m


def test_header_map_lowercases_and_prefers_raw_value() -> None:
    headers = base_pb2.HeaderMap(
        headers=[
            base_pb2.HeaderValue(key="X-Request-Id", raw_value=b"abc"),
            base_pb2.HeaderValue(key="content-type", value="application/json"),
            base_pb2.HeaderValue(key="x-request-id", raw_value=b"second"),
        ]
    )
    assert protocol.header_map(headers) == {
        "x-request-id": "abc",
        "content-type": "application/json",
    }


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(m.request_body(b"{}"), None, id="no-hint"),
        pytest.param(m.request_body(b"{}", subset=[]), frozenset(), id="empty-list"),
        pytest.param(
            m.request_body(b"{}", subset=["1.1.1.1:80", "2.2.2.2:80"]),
            frozenset({"1.1.1.1:80", "2.2.2.2:80"}),
            id="list",
        ),
        pytest.param(m.request_body(b"{}", subset="1.1.1.1:80"), frozenset({"1.1.1.1:80"})),
        pytest.param(m.request_body(b"{}", subset=7), frozenset(), id="wrong-type-is-empty"),
    ],
)
def test_subset_hint(message: Any, expected: frozenset[str] | None) -> None:
    assert protocol.subset_hint(message) == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, None, id="unreported"),
        pytest.param({"served": "1.1.1.1:80"}, "1.1.1.1:80", id="protocol-metadata"),
        pytest.param({"upstream": "2.2.2.2:80"}, "2.2.2.2:80", id="envoy-attribute"),
        pytest.param({"served": "1.1.1.1:80", "upstream": "2.2.2.2:80"}, "1.1.1.1:80"),
    ],
)
def test_served_address(kwargs: dict[str, str], expected: str | None) -> None:
    assert protocol.served_address(m.response_headers(**kwargs)) == expected


def test_empty_body_is_one_final_message() -> None:
    (only,) = protocol.body_responses(b"", True, request=False)
    streamed = only.response_body.response.body_mutation.streamed_response
    assert (streamed.body, streamed.end_of_stream) == (b"", True)


def test_header_and_metadata_name_the_same_destination() -> None:
    answer = protocol.routed_headers("10.1.2.3:8000", {"x-extra": "1"}, ["x-gateway-foo"])
    headers = m.set_headers(answer)
    assert headers["x-gateway-destination-endpoint"] == "10.1.2.3:8000"
    options = answer.request_headers.response.header_mutation.set_headers
    assert all(
        o.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD for o in options
    )
    lb = answer.dynamic_metadata.fields["envoy.lb"].struct_value
    assert lb.fields["x-gateway-destination-endpoint"].string_value == "10.1.2.3:8000"

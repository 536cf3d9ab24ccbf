"""create_transport: every kind by name, an unknown one is a ConfigError with the field."""

from __future__ import annotations

import pytest

from pilothouse.errors import ConfigError
from pilothouse.transport import TRANSPORT_KINDS, TransportSettings, create_transport
from pilothouse.transport.aiohttp_transport import AiohttpTransport
from pilothouse.transport.http1 import Http1Transport


@pytest.mark.parametrize(
    ("kind", "cls"), [("http1", Http1Transport), ("aiohttp", AiohttpTransport)]
)
async def test_each_kind_builds_its_client(kind: str, cls: type) -> None:
    transport = create_transport(kind, TransportSettings(connect_timeout_s=1.0))
    assert isinstance(transport, cls)
    await transport.aclose()


def test_the_default_is_http1_and_the_kinds_are_listed() -> None:
    assert sorted(TRANSPORT_KINDS) == ["aiohttp", "http1"]
    assert isinstance(create_transport(), Http1Transport)


def test_an_unknown_kind_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="unknown upstream client 'h2'") as info:
        create_transport("h2")
    assert info.value.path == "upstream_client"

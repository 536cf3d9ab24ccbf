"""What ``pilothouse up`` does with its services: the restart keeps the port callers know."""

from __future__ import annotations

from pilothouse.controlplane.services import ServiceCommand, pinned


def test_a_restarted_service_keeps_the_port_it_was_served_on() -> None:
    command = ServiceCommand("tool-gateway", ["toolgateway", "-f", "f.yaml", "--port", "0"])
    again = pinned(command, "http://127.0.0.1:41234/mcp")
    assert list(again.args) == ["toolgateway", "-f", "f.yaml", "--port", "41234"]
    assert again.name == command.name
    assert list(command.args)[-1] == "0"  # the original is left as it was


def test_a_command_without_a_port_or_a_url_without_one_is_kept() -> None:
    command = ServiceCommand("agents", ["agent", "serve", "-f", "f.yaml"])
    assert pinned(command, "http://127.0.0.1:8100") is command
    with_port = ServiceCommand("agents", ["agent", "serve", "--port", "8100"])
    assert pinned(with_port, "unix:/tmp/socket") is with_port

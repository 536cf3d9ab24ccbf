"""A small MCP tool server for the agent examples (the official SDK, over stdio).

Tools: ``get_weather`` and ``get_forecast`` (the weather agent), ``lookup_customer`` and
``create_ticket`` (the helpdesk agent). Each call is appended, as one JSON line, to the file
``$HELPDESK_LOG`` names (when set), so a demo or a test can see what was really executed.

    python examples/agents/tools/helpdesk.py        # what the fleet's tools: section runs
"""

from __future__ import annotations

import json
import os
from typing import Any

from mcp.server.mcpserver import MCPServer

server = MCPServer("helpdesk")

CUSTOMERS = {"42": {"name": "Ada Lovelace", "plan": "enterprise", "orders": ["A-17", "A-18"]}}
WEATHER = {"paris": ("sunny", 21), "oslo": ("snow", -3)}


def _log(tool: str, arguments: dict[str, Any]) -> None:
    path = os.environ.get("HELPDESK_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool()
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    _log("get_weather", {"city": city})
    sky, celsius = WEATHER.get(city.lower(), ("cloudy", 12))
    return f"{city}: {sky}, {celsius} °C"


@server.tool()
def get_forecast(city: str) -> str:
    """Tomorrow's forecast for a city."""
    _log("get_forecast", {"city": city})
    return f"{city} tomorrow: light rain, 17 °C"


@server.tool()
def lookup_customer(customer_id: str) -> str:
    """A customer's name, plan and recent orders."""
    _log("lookup_customer", {"customer_id": customer_id})
    customer = CUSTOMERS.get(customer_id)
    return json.dumps(customer) if customer else f"no customer {customer_id}"


@server.tool()
def create_ticket(customer_id: str, summary: str) -> str:
    """File a support ticket (a state change: the example's agent needs an approval)."""
    _log("create_ticket", {"customer_id": customer_id, "summary": summary})
    return f"ticket T-1001 filed for customer {customer_id}"


if __name__ == "__main__":
    server.run()

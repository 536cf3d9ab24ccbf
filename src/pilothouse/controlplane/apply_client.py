"""``pilothouse apply -f FILE``: send a fleet spec to a running ``pilothouse up``.

The file is validated here first (every problem with its path, nothing sent), then sent as
JSON to ``PUT <url>/admin/fleet`` (:mod:`pilothouse.gateway.admin`). The running
fleet validates it again and answers the actions it starts with.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pilothouse.config.fleet import parse_fleet
from pilothouse.config.loader import read_yaml
from pilothouse.errors import ConfigError, PilothouseError
from pilothouse.gateway.admin import ADMIN_PATH


@dataclass(frozen=True, slots=True)
class Applied:
    actions: tuple[str, ...]
    notes: tuple[str, ...]


def default_url(fleet_file: Path) -> str:
    """The gateway the file itself describes (loopback when it binds every address)."""
    spec = parse_fleet(read_yaml(fleet_file), source=str(fleet_file))
    host = spec.gateway.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if spec.gateway.port == 0:
        raise ConfigError("the file's gateway.port is 0 (any free port): give --url", "url")
    return f"http://{host}:{spec.gateway.port}"


def apply_file(fleet_file: Path, url: str, api_key: str | None, timeout_s: float) -> Applied:
    """Validate ``fleet_file`` and apply it to the fleet at ``url``."""
    data = read_yaml(fleet_file)
    parse_fleet(data, source=str(fleet_file))  # every problem, before anything is sent
    request = urllib.request.Request(
        url.rstrip("/") + ADMIN_PATH,
        data=json.dumps(data).encode(),
        method="PUT",
        headers={"content-type": "application/json"},
    )
    if api_key:
        request.add_header("authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise _refused(exc) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise PilothouseError(f"no running fleet answers at {url}: {exc}") from exc
    return Applied(tuple(answer.get("actions", ())), tuple(answer.get("notes", ())))


def _refused(exc: urllib.error.HTTPError) -> PilothouseError:
    try:
        body = json.loads(exc.read())
    except ValueError:
        body = {}
    problems = body.get("problems") or []
    message = body.get("error", {}).get("message") or exc.reason
    if problems:
        return ConfigError(f"the running fleet refused the spec: {message}", problems=problems)
    return PilothouseError(f"the running fleet answered {exc.code}: {message}")

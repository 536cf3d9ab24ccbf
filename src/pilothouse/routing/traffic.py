"""Traffic splits (canary): one public model name, requests shared among model versions.

For each ``traffic`` entry of the Fleet spec, a request whose ``model`` is the public name
is given a version by weight, and its body's ``model`` is rewritten to the version's name
before scheduling (the engines serve the version names, so their answers carry the
version's name too):

- without a session, by smooth weighted round-robin (nginx's): deterministic, and after
  any ``n`` requests each version has had its share to within one request;
- with a session (``x-session-id`` header, else the body's ``user``), by a stable hash of
  the session id onto the weights, so one conversation stays on one version (while the
  weights stay the same) and sessions split by weight.

A new spec (``pilothouse apply``) replaces the splits and restarts the rotation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson

from pilothouse.config.traffic import TrafficSplit
from pilothouse.errors import BadRequest


@dataclass(slots=True)
class _Rotation:
    """Smooth weighted round-robin over one split's versions (weight 0 never picked)."""

    versions: tuple[str, ...]
    weights: tuple[int, ...]
    current: list[int]

    @classmethod
    def of(cls, split: TrafficSplit) -> _Rotation:
        kept = [(v.model, v.weight) for v in split.versions if v.weight > 0]
        return cls(tuple(m for m, _ in kept), tuple(w for _, w in kept), [0] * len(kept))

    def next(self) -> str:
        total = sum(self.weights)
        best = 0
        for i, weight in enumerate(self.weights):
            self.current[i] += weight
            if self.current[i] > self.current[best]:
                best = i
        self.current[best] -= total
        return self.versions[best]

    def for_session(self, session: str, public: str) -> str:
        digest = hashlib.blake2b(f"{public}\0{session}".encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") % sum(self.weights)
        for version, weight in zip(self.versions, self.weights, strict=True):
            if point < weight:
                return version
            point -= weight
        raise AssertionError("unreachable: the point is below the total weight")


class TrafficSplitter:
    """The splits of one gateway (see the module docstring)."""

    def __init__(self, splits: Iterable[TrafficSplit] = ()) -> None:
        self._rotations: dict[str, _Rotation] = {}
        self._splits: dict[str, TrafficSplit] = {}
        self.set_splits(splits)

    def set_splits(self, splits: Iterable[TrafficSplit]) -> None:
        self._splits = {s.name: s for s in splits}
        self._rotations = {name: _Rotation.of(s) for name, s in self._splits.items()}

    def names(self) -> list[str]:
        return sorted(self._splits)

    def splits(self) -> dict[str, TrafficSplit]:
        return dict(self._splits)

    def is_public(self, model: str) -> bool:
        return model in self._rotations

    def choose(self, public: str, session: str | None) -> str:
        """The version for one request to ``public`` (sticky when ``session`` is given)."""
        rotation = self._rotations[public]
        if session:
            return rotation.for_session(session, public)
        return rotation.next()


def with_model(body: bytes, model: str) -> bytes:
    """``body`` (a JSON object) with its ``model`` field set to ``model``."""
    return with_fields(body, {"model": model})


def with_fields(body: bytes, fields: Mapping[str, object]) -> bytes:
    """``body`` (a JSON object) with ``fields`` set (one decode and encode for all)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # parse_request accepted it: cannot happen
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    doc.update(fields)
    return orjson.dumps(doc)

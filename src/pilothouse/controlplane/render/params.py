"""Tunable leaves: the one mechanism that lets the same builders emit manifests or a Helm chart.

A builder marks every value a chart user may want to change with the binder it is given::

    "replicas": bind(plan.replicas, "models", plan.slug, "replicas")

:class:`LiteralBinder` (``render k8s``) returns the value itself. :class:`HelmBinder`
(``render helm``) records it under that path in ``values.yaml`` and returns a
:class:`Placeholder`, which :func:`pilothouse.controlplane.render.bundle.to_yaml` writes as
``{{ .Values... }}``. The namespace is bound the same way (``{{ .Release.Namespace }}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

Scalar = str | int | float | bool
T = TypeVar("T", str, int, float, bool)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NAMESPACE_PATH = (".Release.Namespace",)


class Binder(Protocol):
    """Marks a tunable value; see the module docstring."""

    def __call__(self, value: T, *path: str) -> T: ...

    def namespace(self, value: str) -> str: ...


class LiteralBinder:
    """Plain manifests: every value is itself."""

    def __call__(self, value: T, *path: str) -> T:
        return value

    def namespace(self, value: str) -> str:
        return value


@dataclass(frozen=True, slots=True)
class Placeholder:
    """A value that a Helm template reads from ``.Values`` (or the release namespace)."""

    path: tuple[str, ...]
    value: Scalar

    def expression(self) -> str:
        """The Go template action, e.g. ``{{ index .Values "models" "m" "replicas" }}``."""
        if self.path == NAMESPACE_PATH:
            return "{{ .Release.Namespace }}"
        if all(_IDENTIFIER.match(p) for p in self.path):
            ref = ".Values." + ".".join(self.path)
        else:
            ref = "index .Values " + " ".join(f'"{p}"' for p in self.path)
        pipe = " | quote" if isinstance(self.value, str) else ""
        return "{{ " + ref + pipe + " }}"


class HelmBinder:
    """A chart: values are collected into ``values`` and replaced by placeholders."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: T, *path: str) -> T:
        if not path:
            raise ValueError("a Helm value needs a path")
        node = self.values
        for key in path[:-1]:
            node = node.setdefault(key, {})
        if path[-1] in node and node[path[-1]] != value:
            raise ValueError(f"values path {'.'.join(path)} bound to two different values")
        node[path[-1]] = value
        return cast(T, Placeholder(path, value))

    def namespace(self, value: str) -> str:
        return cast(str, Placeholder(NAMESPACE_PATH, value))

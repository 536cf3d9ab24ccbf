"""Server-side apply for :mod:`pilothouse.testing.fake_kube`, with managedFields-lite semantics.

What is modelled, after the API server's structured-merge-diff: every applied field is a *leaf*
(a scalar, a list — lists are atomic here — or an empty map); each field manager owns the
leaves of its last applied configuration, recorded in ``metadata.managedFields`` in the real
``FieldsV1`` shape (``{"f:spec": {"f:replicas": {}}}``). An apply

- sets every leaf of the configuration;
- removes the leaves the manager applied last time and no longer does (unless another
  manager owns them too);
- conflicts when it changes the value of a leaf another manager owns, unless ``force``, which
  takes the leaf over.

Not modelled: merge keys inside lists (``containers`` by ``name``), defaulting, and the
``Update`` operation's ownership (writes through :meth:`FakeKubeAPI.put` own nothing).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pilothouse.errors import PilothouseError

Obj = dict[str, Any]
FieldPath = tuple[str, ...]

#: Identity and bookkeeping: never owned, never compared.
_SKIPPED: frozenset[FieldPath] = frozenset(
    {
        ("apiVersion",),
        ("kind",),
        ("status",),
        ("metadata", "name"),
        ("metadata", "namespace"),
        ("metadata", "managedFields"),
        ("metadata", "resourceVersion"),
        ("metadata", "uid"),
        ("metadata", "generation"),
        ("metadata", "creationTimestamp"),
    }
)


@dataclass(frozen=True, slots=True)
class Conflict:
    manager: str
    path: FieldPath

    def __str__(self) -> str:
        return "." + ".".join(self.path)


class ApplyConflict(PilothouseError):
    """An apply would change fields other managers own."""

    def __init__(self, conflicts: list[Conflict], api_version: str) -> None:
        self.conflicts = conflicts
        managers = sorted({c.manager for c in conflicts})
        n = len(conflicts)
        head = f"Apply failed with {n} conflict{'s' if n > 1 else ''}: "
        if n == 1:
            only = conflicts[0]
            text = f'conflict with "{only.manager}" using {api_version}: {only}'
        else:
            who = ", ".join(f'"{m}"' for m in managers)
            text = f"conflicts with {who} using {api_version}:\n" + "\n".join(
                f"- {c}" for c in conflicts
            )
        super().__init__(head + text)


def leaves(obj: Mapping[str, Any], prefix: FieldPath = ()) -> dict[FieldPath, Any]:
    """The leaf fields of an applied configuration, with their values."""
    out: dict[FieldPath, Any] = {}
    for key, value in obj.items():
        path = (*prefix, str(key))
        if path in _SKIPPED:
            continue
        if isinstance(value, Mapping) and value:
            out.update(leaves(value, path))
        else:
            out[path] = value
    return out


def owners(obj: Mapping[str, Any] | None) -> dict[str, set[FieldPath]]:
    """Manager → the leaves it owns, from ``metadata.managedFields``."""
    found: dict[str, set[FieldPath]] = {}
    for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        found.setdefault(entry["manager"], set()).update(_paths(entry.get("fieldsV1") or {}))
    return found


def apply(current: Obj | None, config: Mapping[str, Any], manager: str, *, force: bool) -> Obj:
    """The object after ``manager`` applies ``config``; raises :class:`ApplyConflict`."""
    applied = leaves(config)
    owned = owners(current)
    result: Obj = copy.deepcopy(current) if current is not None else _skeleton(config)
    conflicts = [
        Conflict(other, path)
        for path, value in applied.items()
        if _get(result, path) != (True, value)
        for other, paths in sorted(owned.items())
        if other != manager and any(_overlap(path, p) for p in paths)
    ]
    if conflicts and not force:
        raise ApplyConflict(conflicts, str(config.get("apiVersion", "")))
    for conflict in conflicts:
        owned[conflict.manager] = {
            p for p in owned[conflict.manager] if not _overlap(conflict.path, p)
        }
    others = set().union(*(p for m, p in owned.items() if m != manager))
    for path in owned.get(manager, set()) - applied.keys():
        if path not in others:
            _remove(result, path)
    for path, value in applied.items():
        _set(result, path, copy.deepcopy(value))
    owned[manager] = set(applied)
    result["metadata"]["managedFields"] = [
        {
            "manager": m,
            "operation": "Apply",
            "apiVersion": result.get("apiVersion", ""),
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(paths),
        }
        for m, paths in sorted(owned.items())
        if paths
    ]
    return result


def fields_v1(paths: set[FieldPath]) -> Obj:
    """``{"f:spec": {"f:replicas": {}}}`` for ``{("spec", "replicas")}``."""
    tree: Obj = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return tree


def _paths(tree: Mapping[str, Any], prefix: FieldPath = ()) -> Iterator[FieldPath]:
    for key, sub in tree.items():
        path = (*prefix, key.removeprefix("f:"))
        if sub:
            yield from _paths(sub, path)
        else:
            yield path


def _overlap(a: FieldPath, b: FieldPath) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _skeleton(config: Mapping[str, Any]) -> Obj:
    meta = config.get("metadata") or {}
    metadata = {k: meta[k] for k in ("name", "namespace") if k in meta}
    return {
        "apiVersion": config.get("apiVersion"),
        "kind": config.get("kind"),
        "metadata": metadata,
    }


def _get(obj: Mapping[str, Any], path: FieldPath) -> tuple[bool, Any]:
    node: Any = obj
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _set(obj: Obj, path: FieldPath, value: Any) -> None:
    node = obj
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def _remove(obj: Obj, path: FieldPath) -> None:
    """Remove a leaf, then the maps it leaves empty."""
    parents: list[tuple[Obj, str]] = []
    node: Any = obj
    for part in path[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            return
        parents.append((node, part))
        node = node[part]
    node.pop(path[-1], None)
    for parent, key in reversed(parents):
        if parent[key]:
            break
        del parent[key]

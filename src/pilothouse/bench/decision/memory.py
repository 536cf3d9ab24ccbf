"""How much memory a prefix index holds: a deep ``sys.getsizeof`` walk.

Counts every object reachable from the roots through containers (dict, set, list, tuple),
``__slots__`` and ``__dict__``, each once; classes, modules and functions are not followed.
Interned small ints and strings shared with the rest of the process are counted as well,
so the figure is an upper bound of what dropping the index would free.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable

_OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
_LEAF = (int, float, str, bytes, bool, type(None))


def deep_size(roots: Iterable[object]) -> int:
    """Bytes held by ``roots`` and everything they reach (each object counted once)."""
    seen: set[int] = set()
    stack: list[object] = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _OPAQUE):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, _LEAF):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        else:
            stack.extend(_attributes(obj))
    return total


def _attributes(obj: object) -> list[object]:
    found = []
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if hasattr(obj, slot):
                found.append(getattr(obj, slot))
    instance_dict = getattr(obj, "__dict__", None)
    if isinstance(instance_dict, dict):
        found.append(instance_dict)
    return found

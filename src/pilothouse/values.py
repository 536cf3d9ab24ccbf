"""``@value``: an immutable record for the request path, checked by the type checker.

A ``@dataclass(frozen=True)`` enforces immutability at run time by routing every field of
``__init__`` through ``object.__setattr__``: a 10-field record costs about 1.0 µs to build
against 0.22 µs for the same class unfrozen (``timeit``, Python 3.11). The gateway builds a
dozen such records per request (the parsed request, the scheduling request, one endpoint
snapshot per replica, scores, picks, the upstream request), so the run-time check alone cost
several microseconds on every request.

``@value`` keeps the guarantee where it is cheap to keep it: type checkers see a frozen
dataclass (``dataclass_transform(frozen_default=True)``), so ``record.field = x`` is a mypy
error (``Property "field" ... is read-only``), and ``dataclasses.replace``, ``fields`` and
equality work as before; at run time the class is a slotted dataclass whose ``__init__``
stores its fields directly, hashable by value (``unsafe_hash``) as a frozen one is. Use it
for records built per request; everything else keeps ``@dataclass(frozen=True)``.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def value(cls: type[_T]) -> type[_T]:
    """A slotted dataclass, frozen for type checkers (module docstring)."""
    return dataclasses.dataclass(slots=True, unsafe_hash=True)(cls)


__all__ = ["value"]

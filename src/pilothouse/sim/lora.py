"""LoRA adapter slots: at most ``max_loras`` distinct adapters in a batch, LRU-loaded.

An adapter is *running* while a running request uses it. Admitting a request whose adapter
is not running needs a free slot (fewer than ``max_loras`` running adapters). Adapters stay
loaded after use; loading one that is not resident evicts the least recently used idle one
and costs ``LatencyModel.lora_load_s`` in that step.
"""

from __future__ import annotations

from collections import Counter, OrderedDict


class LoraSlots:
    """Running and loaded adapters of one replica."""

    __slots__ = ("_loaded", "_running", "max_loras")

    def __init__(self, max_loras: int) -> None:
        self.max_loras = max_loras
        self._running: Counter[str] = Counter()
        self._loaded: OrderedDict[str, None] = OrderedDict()

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._running)

    @property
    def loaded(self) -> tuple[str, ...]:
        """Resident adapters, least recently used first."""
        return tuple(self._loaded)

    def fits(self, lora: str | None) -> bool:
        if lora is None or lora in self._running:
            return True
        return len(self._running) < self.max_loras

    def acquire(self, lora: str) -> int:
        """Count a request on ``lora``; returns 1 when the adapter had to be loaded."""
        self._running[lora] += 1
        if lora in self._loaded:
            self._loaded.move_to_end(lora)
            return 0
        if len(self._loaded) >= self.max_loras:
            idle = next(name for name in self._loaded if name not in self._running)
            del self._loaded[idle]
        self._loaded[lora] = None
        return 1

    def release(self, lora: str) -> None:
        self._running[lora] -= 1
        if self._running[lora] <= 0:
            del self._running[lora]

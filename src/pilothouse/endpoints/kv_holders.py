"""Which endpoints hold a request key, in which tier: the read side of the prefix index.

:class:`~pilothouse.endpoints.kv_index.KVBlockIndex` applies KV events per endpoint and keeps,
per endpoint, how many of its blocks hold each request key on the GPU (``key_gpu``) and
offloaded (``key_off``, CPU tier and beyond). It reports each change of those counts here,
where two global maps follow:

- ``request key → endpoints`` holding it in any tier (what :meth:`KeyHolders.match` walks);
- ``request key → endpoints`` holding it *only* offloaded (empty in a fleet without an
  offload tier, which makes :meth:`KeyHolders.match_tiers` cost what ``match`` does).
"""

from __future__ import annotations

from collections.abc import Sequence


class KeyHolders:
    """Request key → endpoints, in any tier and offloaded only (see the module docstring)."""

    __slots__ = ("_any", "_offloaded")

    def __init__(self) -> None:
        self._any: dict[int, set[str]] = {}
        self._offloaded: dict[int, set[str]] = {}

    def __len__(self) -> int:
        """Distinct keys held by any endpoint."""
        return len(self._any)

    # -- reads -------------------------------------------------------------------------------

    def match(self, keys: Sequence[int]) -> dict[str, int]:
        """Per endpoint, how many of ``keys`` it holds (any tier) from the first (endpoints
        with ≥ 1)."""
        matched: dict[str, int] = {}
        if not keys:
            return matched
        alive = self._any.get(keys[0])
        if not alive:
            return matched
        current = set(alive)
        depth = 1
        get = self._any.get
        for key in keys[1:]:
            holders = get(key)
            if holders is not None and current <= holders:
                depth += 1  # the usual step along a shared chain: nobody drops out
                continue
            kept = current & holders if holders else set()
            for name in current - kept:
                matched[name] = depth
            current = kept
            if not current:
                return matched
            depth += 1
        for name in current:
            matched[name] = depth
        return matched

    def match_tiers(self, keys: Sequence[int]) -> dict[str, tuple[int, int]]:
        """Per endpoint, ``(held, on_gpu)``: :meth:`match`'s depth, and how many of those
        blocks, from the first, it holds on the GPU."""
        matched = self.match(keys)
        offloaded = self._offloaded
        if not offloaded:
            return {name: (depth, depth) for name, depth in matched.items()}
        tiers: dict[str, tuple[int, int]] = {}
        for name, depth in matched.items():
            gpu = 0
            for key in keys[:depth]:
                holders = offloaded.get(key)
                if holders is not None and name in holders:
                    break
                gpu += 1
            tiers[name] = (depth, gpu)
        return tiers

    # -- count changes (the index) -------------------------------------------------------------
    # ``key_gpu`` and ``key_off`` are the endpoint's counts *after* the caller's block change
    # except for ``key``, which these methods update themselves.

    def gpu_up(
        self, endpoint: str, key_gpu: dict[int, int], key_off: dict[int, int], key: int
    ) -> None:
        """One more of ``endpoint``'s blocks holds ``key`` on the GPU."""
        refs = key_gpu.get(key, 0)
        key_gpu[key] = refs + 1
        if refs == 0:
            if key in key_off:
                _discard(self._offloaded, key, endpoint)
            else:
                self._any.setdefault(key, set()).add(endpoint)

    def gpu_down(
        self, endpoint: str, key_gpu: dict[int, int], key_off: dict[int, int], key: int
    ) -> None:
        """One fewer of ``endpoint``'s blocks holds ``key`` on the GPU."""
        refs = key_gpu[key] - 1
        if refs:
            key_gpu[key] = refs
            return
        del key_gpu[key]
        if key in key_off:
            self._offloaded.setdefault(key, set()).add(endpoint)
        else:
            _discard(self._any, key, endpoint)

    def off_up(
        self, endpoint: str, key_gpu: dict[int, int], key_off: dict[int, int], key: int
    ) -> None:
        """One more of ``endpoint``'s blocks holds ``key`` offloaded."""
        refs = key_off.get(key, 0)
        key_off[key] = refs + 1
        if refs == 0 and key not in key_gpu:
            self._any.setdefault(key, set()).add(endpoint)
            self._offloaded.setdefault(key, set()).add(endpoint)

    def off_down(
        self, endpoint: str, key_gpu: dict[int, int], key_off: dict[int, int], key: int
    ) -> None:
        """One fewer of ``endpoint``'s blocks holds ``key`` offloaded."""
        refs = key_off[key] - 1
        if refs:
            key_off[key] = refs
            return
        del key_off[key]
        if key not in key_gpu:
            _discard(self._any, key, endpoint)
            _discard(self._offloaded, key, endpoint)

    def forget(self, endpoint: str, key_gpu: dict[int, int], key_off: dict[int, int]) -> None:
        """``endpoint`` holds none of its keys any more (the caller clears its counts)."""
        for key in key_gpu:
            _discard(self._any, key, endpoint)
        for key in key_off:
            _discard(self._any, key, endpoint)
            _discard(self._offloaded, key, endpoint)


def _discard(holders: dict[int, set[str]], key: int, endpoint: str) -> None:
    names = holders.get(key)
    if names is not None:
        names.discard(endpoint)
        if not names:
            del holders[key]

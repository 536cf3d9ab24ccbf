"""A multi-tenant character radix tree: the SGLang router's "approximate tree".

One tree holds the prompt text routed to every endpoint (a *tenant*). Each node carries an
edge of text and, per tenant that has been sent text through it, the time of its last
access. :meth:`ApproxTree.prefix_match` walks the longest stored prefix of a text and names
the first tenant (earliest inserted, still present) at the deepest node reached;
:meth:`ApproxTree.evict` trims every tenant over a size budget by removing its least
recently used leaves, as ``Tree::evict_tenant_by_size`` does in sgl-project/sglang
``sgl-router/src/tree.rs``. Sizes are counted in characters of the edges a tenant holds.

Time is whatever the caller passes (the scheduler's clock), never the wall clock. Edges are
compared with ``str.startswith`` (C speed); a partial match is located by bisection.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence


class _Node:
    __slots__ = ("children", "parent", "tenants", "text")

    def __init__(self, text: str, parent: _Node | None) -> None:
        self.text = text
        self.parent = parent
        self.children: dict[str, _Node] = {}
        self.tenants: dict[str, float] = {}  # tenant -> last access time, insertion ordered


def _shared_length(edge: str, text: str, start: int) -> int:
    """Length of the common prefix of ``edge`` and ``text[start:]`` (known to differ)."""
    low, high = 0, min(len(edge), len(text) - start)
    while low < high:  # invariant: edge[:low] matches, edge[:high + 1] does not
        mid = (low + high + 1) // 2
        if text.startswith(edge[:mid], start):
            low = mid
        else:
            high = mid - 1
    return low


class ApproxTree:
    """Per-tenant routing history as one shared radix tree of characters."""

    __slots__ = ("_root", "_sizes")

    def __init__(self) -> None:
        self._root = _Node("", None)
        self._sizes: dict[str, int] = {}

    def size(self, tenant: str) -> int:
        """Characters held by ``tenant`` (0 when unknown)."""
        return self._sizes.get(tenant, 0)

    def tenants(self) -> list[str]:
        """Known tenants, in the order they were first seen."""
        return list(self._sizes)

    def add_tenant(self, tenant: str, now: float) -> None:
        """Register a tenant with an empty history (as the router does for a new worker)."""
        if tenant not in self._sizes:
            self._sizes[tenant] = 0
            self._root.tenants[tenant] = now

    def insert(self, text: str, tenant: str, now: float) -> None:
        """Record that ``text`` was sent to ``tenant`` at ``now``."""
        self.add_tenant(tenant, now)
        node = self._root
        node.tenants[tenant] = now
        sizes = self._sizes
        i, n = 0, len(text)
        while i < n:
            child = node.children.get(text[i])
            if child is None:
                leaf = _Node(text[i:], node)
                leaf.tenants[tenant] = now
                node.children[text[i]] = leaf
                sizes[tenant] += n - i
                return
            edge = child.text
            if not text.startswith(edge, i):
                child = self._split(node, child, _shared_length(edge, text, i))
            if tenant not in child.tenants:
                sizes[tenant] += len(child.text)
            child.tenants[tenant] = now
            i += len(child.text)
            node = child

    def prefix_match(self, text: str, now: float) -> tuple[int, str | None]:
        """Characters of the longest stored prefix of ``text`` and the tenant holding it.

        The tenant's access times are refreshed from that node up to the root. ``None``
        when the tree has no tenant at all.
        """
        node = self._root
        i, n = 0, len(text)
        while i < n:
            child = node.children.get(text[i])
            if child is None:
                break
            edge = child.text
            node = child
            if text.startswith(edge, i):
                i += len(edge)
            else:
                i += _shared_length(edge, text, i)
                break
        tenant = next(iter(node.tenants), None)
        if tenant is not None:
            walk: _Node | None = node
            while walk is not None:
                walk.tenants[tenant] = now
                walk = walk.parent
        return i, tenant

    def smallest(self, candidates: Sequence[str]) -> str:
        """The candidate holding the fewest characters (the first one on ties)."""
        sizes = self._sizes
        return min(candidates, key=lambda tenant: sizes.get(tenant, 0))

    def evict(self, max_size: int) -> None:
        """Drop least recently used leaves of every tenant above ``max_size`` characters."""
        over = [t for t, size in self._sizes.items() if size > max_size]
        if not over:
            return
        heap: list[tuple[float, int, str, _Node]] = []
        order = 0
        for node in self._nodes():
            for tenant in over:
                if self._is_leaf_of(node, tenant):
                    heap.append((node.tenants[tenant], order, tenant, node))
                    order += 1
        heapq.heapify(heap)
        while heap:
            _, _, tenant, node = heapq.heappop(heap)
            if self._sizes[tenant] <= max_size or tenant not in node.tenants:
                continue
            self._sizes[tenant] -= len(node.text)
            del node.tenants[tenant]
            parent = node.parent
            if parent is None:
                continue
            if not node.children and not node.tenants:
                del parent.children[node.text[0]]
            if parent is not self._root and self._is_leaf_of(parent, tenant):
                heapq.heappush(heap, (parent.tenants[tenant], order, tenant, parent))
                order += 1

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _split(parent: _Node, child: _Node, shared: int) -> _Node:
        """Cut ``child``'s edge after ``shared`` characters; returns the new middle node."""
        middle = _Node(child.text[:shared], parent)
        middle.tenants = dict(child.tenants)
        child.text = child.text[shared:]
        child.parent = middle
        middle.children[child.text[0]] = child
        parent.children[middle.text[0]] = middle
        return middle

    @staticmethod
    def _is_leaf_of(node: _Node, tenant: str) -> bool:
        if tenant not in node.tenants:
            return False
        return not any(tenant in child.tenants for child in node.children.values())

    def _nodes(self) -> Iterator[_Node]:
        """Every node but the root, depth first."""
        stack = list(self._root.children.values())
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())

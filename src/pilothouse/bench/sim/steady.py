"""The steady state of a run: its arrival window less a warm-up, and the queue ratio there.

The simulator's ``max_queue_ratio`` already leaves out the drain after the workload's last
independent arrival (:mod:`pilothouse.sim.recorder`). It keeps the start, though, where
the queues fill from empty and a policy that has not yet seen a prefix may pile a burst on
one replica; ``max_queue_ratio_steady`` takes the same ratio (``max / mean`` of the engine
wait queues at each sample whose mean is at least one request; 1.0 when no sample
qualifies) over the samples in ``[first arrival + warm-up, last independent arrival]``.

The warm-up defaults to :data:`DEFAULT_WARMUP_FRACTION` of the arrival window, or is given
in seconds (``--warmup-s``). :class:`ArrivalWindow` watches a request stream pass through
to the simulator (which consumes it lazily), so no workload is held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pilothouse.sim.cluster_types import QueueTrace, SimRequest

__all__ = ["DEFAULT_WARMUP_FRACTION", "ArrivalWindow", "steady_queue_ratio"]

DEFAULT_WARMUP_FRACTION = 0.1
"""Share of the arrival window skipped as warm-up when ``--warmup-s`` is not given."""


class ArrivalWindow:
    """First and last independent arrival (``after`` unset) of a stream it passes on."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0

    def watch(self, requests: Iterable[SimRequest]) -> Iterator[SimRequest]:
        for request in requests:
            if request.after is None:
                if self.first is None:
                    self.first = request.arrival_s
                self.last = max(self.last, request.arrival_s)
            yield request

    def steady(self, warmup_s: float | None) -> tuple[float, float]:
        """``(start, end)`` of the steady state: the window less its warm-up."""
        first = self.first or 0.0
        span = max(0.0, self.last - first)
        skip = span * DEFAULT_WARMUP_FRACTION if warmup_s is None else warmup_s
        return first + skip, self.last


def steady_queue_ratio(trace: QueueTrace, start: float, end: float) -> float:
    """The largest ``max / mean`` wait queue over the samples in ``[start, end]`` whose mean
    queue is at least one request; 1.0 (even) when there is none."""
    worst = 1.0
    replicas = len(trace.queues)
    if not replicas:
        return worst
    for index, time in enumerate(trace.times):
        if time < start or time > end:
            continue
        column = [series[index] for series in trace.queues]
        total = sum(column)
        if total >= replicas:
            worst = max(worst, max(column) * replicas / total)
    return worst

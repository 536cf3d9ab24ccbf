"""Why a profile preferred one endpoint to another: each scorer's value, re-computed.

A scheduling cycle keeps only each endpoint's weighted total (the hot path builds no
per-scorer tables). To explain a decision, :func:`explain` runs a profile's filters and
scorers again, on the same endpoints and request with a fresh :class:`CycleState`, and
reports each scorer's clamped value for the endpoints asked about. Scorers are pure
functions of the request, the snapshot and the cycle's ``now``, so the values are the
cycle's own as long as nothing changed in between: the scheduler explains a decision
before its post-schedule hooks run (they update prefix indexes).

It costs one more pass over the profile, so callers ask only for requests they record
(a sampled trace with ``decision_detail`` on).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from pilothouse.scheduling.interfaces import PREFIX_MATCH_KEY, CycleState
from pilothouse.scheduling.profile import Profile
from pilothouse.scheduling.types import Endpoint, ProfileResult, SchedulingRequest


def _empty() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Explanation:
    """Each scorer's value in [0, 1] (before its weight) per endpoint asked about."""

    profile: str
    scores: Mapping[str, Mapping[str, float]]
    """endpoint name → scorer name → clamped value."""
    weights: Mapping[str, float]
    """scorer name → its weight in the profile."""
    prefix_match: Mapping[str, float] = field(default_factory=_empty)
    """endpoint name → share of the prompt estimated in its prefix cache (prefix scorers)."""


def explain(
    profile: Profile,
    now: float,
    request: SchedulingRequest,
    endpoints: Sequence[Endpoint],
    names: Collection[str],
) -> Explanation:
    """Re-run ``profile``'s filters and scorers over ``endpoints``; values for ``names``.

    Every scorer sees every endpoint that passed the filters, as in the real cycle (some
    normalise across candidates); only the values of ``names`` are kept.
    """
    state = CycleState(now=now)
    candidates = endpoints
    for plugin in profile.filters:
        candidates = plugin.filter(state, request, candidates)
    wanted = [(i, e.name) for i, e in enumerate(candidates) if e.name in names]
    scores: dict[str, dict[str, float]] = {name: {} for _, name in wanted}
    for ws in profile.scorers:
        values = ws.scorer.score(state, request, candidates) if candidates else []
        for i, name in wanted:
            scores[name][ws.scorer.name] = _clamp(values[i]) if i < len(values) else 0.0
    match = state.data.get(PREFIX_MATCH_KEY)
    prefix: dict[str, float] = {}
    if isinstance(match, Mapping):
        for name in scores:
            value = match.get(name)
            if isinstance(value, int | float):
                prefix[name] = float(value)
    return Explanation(
        profile=profile.name,
        scores={name: MappingProxyType(values) for name, values in scores.items()},
        weights={ws.scorer.name: ws.weight for ws in profile.scorers},
        prefix_match=MappingProxyType(prefix),
    )


def runner_up(result: ProfileResult) -> tuple[str, float] | None:
    """The best-scored endpoint other than the picked one (``targets[0]``), with its total."""
    if not result.targets:
        return None
    picked = result.targets[0].name
    best: tuple[str, float] | None = None
    for name, total in result.scores.items():
        if name != picked and (best is None or total > best[1]):
            best = (name, total)
    return best


def _clamp(value: float) -> float:
    """As the profile runner weights it: below 0 or NaN counts 0, above 1 counts 1."""
    if value >= 1.0:
        return 1.0
    if value > 0.0:
        return float(value)
    return 0.0

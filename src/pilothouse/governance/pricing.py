"""Budget periods (UTC day, month, total) and what a request costs at a model's price."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from pilothouse.config.governance import PriceSpec
from pilothouse.governance.records import (
    BudgetPeriod,
)


def period_of(period: BudgetPeriod, now: float) -> str:
    """The budget period ``now`` falls in (UTC): ``total``, ``2026-12`` or ``2026-12-07``."""
    if period == "total":
        return "total"
    return _period_label(period, int(now // DAY_S))


DAY_S = 86_400


@functools.lru_cache(maxsize=16)
def _period_label(period: BudgetPeriod, epoch_day: int) -> str:
    """Formatted once per UTC day (POSIX days are exactly 86,400 s), not per request:
    formatting a datetime cost more than the budget check it labels."""
    day = datetime.fromtimestamp(epoch_day * DAY_S, UTC)
    return f"{day:%Y-%m}" if period == "month" else f"{day:%Y-%m-%d}"


def period_start(period: BudgetPeriod, now: float) -> datetime:
    """When the period ``now`` falls in began (the ledger is summed from there)."""
    day = datetime.fromtimestamp(now, UTC)
    if period == "total":
        return datetime.fromtimestamp(0, UTC)
    if period == "month":
        return day.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return day.replace(hour=0, minute=0, second=0, microsecond=0)


def cost_of(price: PriceSpec, prompt: int, completion: int, engine_s: float) -> float:
    per_token = (
        prompt * price.prompt_per_million + completion * price.completion_per_million
    ) / 1_000_000
    engine = min(engine_s, price.max_request_s) * price.gpus * price.gpu_hour / 3600
    return per_token + engine

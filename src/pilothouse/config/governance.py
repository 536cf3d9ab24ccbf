"""The governance spec: where identities, limits, budgets and the ledger live, and prices.

``gateway.governance`` in a fleet file (and ``governance`` in the endpoint picker's
``--config``). Absent, the gateway serves without identities (the ``gateway.api_key`` shared
secret still applies). See docs/governance.md for what each field does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriceSpec(_Spec):
    """What a model's requests cost, in the budgets' currency.

    Per token (``prompt_per_million`` / ``completion_per_million``, as hosted APIs bill), or,
    for self-hosted models, by engine time: the seconds a request spent on its replica times
    ``gpus`` times ``gpu_hour`` / 3600. Both may be set; the costs add up.
    """

    prompt_per_million: float = Field(default=0.0, ge=0)
    completion_per_million: float = Field(default=0.0, ge=0)
    gpu_hour: float = Field(default=0.0, ge=0)
    """Hourly rate of one GPU (or replica) serving the model."""
    gpus: float = Field(default=1.0, gt=0)
    """GPUs one replica holds."""
    max_request_s: float = Field(default=60.0, gt=0)
    """Most engine seconds a request is reserved for when priced by engine time (the
    reservation before the call; settled from the time it really took)."""


class LimitSpec(_Spec):
    """Token rate limits of one model, over every caller together; ``None``: unlimited."""

    requests_per_min: int | None = Field(default=None, gt=0)
    tokens_per_min: int | None = Field(default=None, gt=0)
    """Prompt plus output tokens per rolling minute (reserved up front, corrected after)."""
    concurrent: int | None = Field(default=None, gt=0)


class JwtSpec(_Spec):
    """JWT bearer tokens validated against a JWKS; claims name the team and priority."""

    jwks_file: Path | None = None
    """A local JWKS document (``{"keys": [...]}``)."""
    jwks_url: str | None = None
    """An HTTPS JWKS endpoint, fetched and cached (``jwks_cache_s``)."""
    jwks_cache_s: float = Field(default=300.0, gt=0)
    issuer: str | None = None
    """Required ``iss``; None accepts any issuer."""
    audiences: list[str] = Field(default_factory=list)
    """Accepted ``aud`` values; empty accepts tokens without an audience only."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    leeway_s: float = Field(default=30.0, ge=0)
    """Clock skew tolerated on ``exp`` / ``nbf``."""
    team_claim: str = "team"
    """Claim holding the team's name (a dotted path reads nested claims: ``org.team``)."""
    priority_claim: str | None = None
    """Claim holding a priority class name, mapped through ``priorities``."""
    priorities: dict[str, int] = Field(default_factory=dict)
    """Priority class name (from ``priority_claim``) → flow-control priority."""
    envoy_payload_header: str | None = None
    """Behind Envoy's ``jwt_authn`` (the endpoint picker): the header into which Envoy writes
    the verified payload (``forward_payload_header``). The picker reads the claims from it
    without re-verifying; Envoy must strip the header from client requests."""

    @model_validator(mode="after")
    def _source(self) -> JwtSpec:
        sources = [self.jwks_file, self.jwks_url, self.envoy_payload_header]
        if not any(s is not None for s in sources):
            raise ValueError("set jwks_file, jwks_url or envoy_payload_header")
        if self.jwks_file is not None and self.jwks_url is not None:
            raise ValueError("set one of jwks_file and jwks_url, not both")
        return self


class LedgerSpec(_Spec):
    """The usage ledger: written ahead to local disk, flushed in batches to the store."""

    batch_size: int = Field(default=2000, gt=0)
    """Entries written to the store in one transaction at most: a full batch is written at
    once, what waits otherwise every ``flush_interval_s``."""
    flush_interval_s: float = Field(default=0.5, gt=0)
    """Longest time an entry waits on local disk before it is sent to the store."""
    max_buffered: int = Field(default=10_000, gt=0)
    """Entries kept in memory at most; beyond, they wait on disk only (a store outage
    never grows the gateway's memory)."""


class GovernanceSpec(_Spec):
    """Identities, token rate limits, budgets and the ledger (docs/governance.md)."""

    store: str | None = None
    """SQLAlchemy URL of the store (``postgresql+psycopg://…``); default: SQLite in
    ``state_dir``."""
    state_dir: Path | None = None
    """Where the SQLite store and the ledger's write-ahead log live; default:
    ``$XDG_STATE_HOME/pilothouse`` (``~/.local/state/pilothouse``)."""
    redis: str | None = None
    """``redis://host:port/db`` shared by several gateway replicas for rate limits and
    budgets; default: kept in this process."""
    require_key: bool = True
    """Refuse requests without an API key or JWT (401). Off: anonymous requests are served
    and recorded without an owner, limited only by ``anonymous``'s limits."""
    sync_interval_s: float = Field(default=0.5, gt=0)
    """How often each replica reads key, team and organisation changes from the store (a
    revoked key is refused everywhere within this interval)."""
    max_output_tokens: int = Field(default=4096, gt=0)
    """A request that sets no ``max_tokens`` gets this many written into it, so what it
    reserves is a true upper bound of what it can use."""
    model_limits: dict[str, LimitSpec] = Field(default_factory=dict)
    """Model name → rate limits shared by every caller of that model."""
    prices: dict[str, PriceSpec] = Field(default_factory=dict)
    """Model name → price; a model without one costs nothing (token budgets still apply)."""
    jwt: JwtSpec | None = None
    ledger: LedgerSpec = Field(default_factory=LedgerSpec)
    budget_unit: str = "USD"
    """The currency of money budgets and prices (a label in messages and metrics)."""
    mode: Literal["enforce", "observe"] = "enforce"
    """``observe``: count and record everything, refuse nothing (to size limits first)."""

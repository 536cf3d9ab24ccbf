"""The one exception tree of pilothouse.

Foreign errors are translated at the boundary (``raise X(...) from exc``) and mapped to
OpenAI error bodies in one place (:mod:`pilothouse.openai.errors`). Every exception
pilothouse defines derives from :class:`PilothouseError`; those defined next to their only
users are drawn with their module in brackets, private control-flow ones (never seen
outside their module) with a leading underscore::

    PilothouseError
    ├── ConfigError                 bad config file or spec (carries the field path)
    │   └── LedgerInUse             [governance.ledger_wal] another live process holds
    │                               that ledger directory
    ├── SpecProblems                [config.loader] a validator's problems, each with its
    │                               path; also a ValueError (pydantic needs one); the loader
    │                               turns it into a ConfigError
    ├── EngineError                 an engine could not be located, started or stopped
    ├── ProtocolError               a peer sent bytes its wire protocol does not allow
    │   └── KVEventDecodeError      not a KV event batch in any known layout; also a
    │                               ValueError
    ├── EppProtocolError            [epp.processor] a message out of ext_proc's order
    ├── DeployError                 [controlplane.kube_client] Kubernetes refused or is out
    │   │                           of reach, with advice
    │   └── MissingKind             the cluster does not serve a kind (a CRD is missing)
    ├── BenchError                  [bench.processes] a benchmark could not run
    ├── StoreUnavailable            the governance store (SQLite, PostgreSQL) is out of reach
    ├── AgentError                  [agents] a run cannot go on: its model or tool gateway
    │   │                           failed, or it cannot be resumed as asked
    │   └── RunInProgress           [agents] another process runs it (holds its lease)
    ├── NotSql                      [ui.governed] a console page needs the SQL governance
    │                               store (agent runs, approvals, audit)
    ├── ApplyConflict               [testing._kube_ssa] the fake API server's 409
    ├── _Missing                    [controlplane.kube_client] a 404 for one object
    ├── _Expired                    [endpoints.kubernetes] a watch's 410 Gone: list again
    ├── _HttpError                  [bench.live_client] one load-test request failed
    ├── SchedulingError             the scheduler could not place a request
    │   ├── NoEndpointAvailable     nothing ready for that model            → 503
    │   └── RequestShed             flow control dropped the request        → 429
    └── RequestError                a client-facing failure with an HTTP status
        ├── BadRequest              malformed JSON, missing/wrong-typed field → 400
        ├── Unauthorized            missing or wrong API key                → 401
        ├── Forbidden               a key used beyond its scope              → 403
        ├── AdminForbidden          [gateway.admin_guard] admin call refused   → 403
        ├── UnsupportedMediaType    [gateway.admin_guard] admin body not JSON   → 415
        ├── ModelNotFound           unknown model                           → 404
        ├── NotFound                [governance] no such organisation, team or key → 404
        ├── Conflict                [governance] that name is taken              → 409
        ├── PayloadTooLarge         body over the configured limit          → 413
        ├── RateLimited             [governance] a rate limit would be exceeded → 429
        ├── BudgetExceeded          [governance] a budget would be exceeded    → 429
        ├── LimitStoreUnavailable   [governance] the shared limit/budget store (Redis)
        │                           is out of reach; the request is refused  → 503
        ├── UpstreamError           the engine failed                       → 502
        └── UpstreamTimeout         the engine did not answer in time       → 504
"""

from __future__ import annotations

from collections.abc import Sequence


class PilothouseError(Exception):
    """Base of every error pilothouse raises on purpose."""


class ConfigError(PilothouseError):
    """A configuration value is invalid; ``path`` names the field (``plugins[1].type``).

    ``problems`` lists every problem found, one ``path: message`` line each (``path`` is
    the first one's); a single problem is its own list.
    """

    def __init__(self, message: str, path: str = "", problems: Sequence[str] = ()) -> None:
        self.path = path
        self.message = message
        # ``problems`` lines carry their own paths: the message is already their list.
        text = f"{path}: {message}" if path and not problems else message
        self.problems: tuple[str, ...] = tuple(problems) or (text,)
        super().__init__(text)


class EngineError(PilothouseError):
    """An engine could not be located, started, health-checked or stopped."""


class ProtocolError(PilothouseError):
    """Bytes a peer sent (an engine's KV events, Envoy's ext_proc stream) break the protocol."""


class KVEventDecodeError(ProtocolError, ValueError):
    """The payload is not a KV event batch in any layout we know.

    Also a :class:`ValueError`, as it was before it joined the tree: code that catches bad
    input as ``ValueError`` keeps working.
    """


class StoreUnavailable(PilothouseError):
    """The governance store cannot be reached or answered with a database error (a stopped
    PostgreSQL, a locked SQLite file). The request path keeps serving from its in-memory
    directory and its ledger waits on disk; callers retry later."""


class SchedulingError(PilothouseError):
    """The scheduler could not place a request."""

    status = 500
    error_type = "server_error"


class NoEndpointAvailable(SchedulingError):
    """No ready endpoint can serve the request."""

    status = 503
    error_type = "service_unavailable"


class RequestShed(SchedulingError):
    """Flow control dropped the request; the client may retry after ``retry_after`` seconds."""

    status = 429
    error_type = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class RequestError(PilothouseError):
    """A failure that maps to one HTTP status and an OpenAI error body."""

    status = 500
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        self.message = message
        self.param = param
        self.code = code
        super().__init__(message)


class BadRequest(RequestError):
    status = 400
    error_type = "invalid_request_error"


class Unauthorized(RequestError):
    status = 401
    error_type = "authentication_error"


class Forbidden(RequestError):
    """A valid identity asking for something it may not do (a model, a network)."""

    status = 403
    error_type = "permission_error"


class ModelNotFound(RequestError):
    status = 404
    error_type = "invalid_request_error"


class NotFound(RequestError):
    """An organisation, team or key that does not exist (admin API, CLI)."""

    status = 404
    error_type = "not_found_error"


class Conflict(RequestError):
    """A name already taken within its parent (admin API, CLI)."""

    status = 409
    error_type = "invalid_request_error"


class PayloadTooLarge(RequestError):
    status = 413
    error_type = "invalid_request_error"


class RateLimited(RequestError):
    """A request would exceed ``subject``'s ``what`` limit (reserved before any engine work)."""

    status = 429
    error_type = "rate_limit_exceeded"

    def __init__(self, subject: str, what: str, limit: int, retry_after: float = 60.0) -> None:
        self.subject = subject
        self.retry_after = retry_after
        super().__init__(
            f"rate limit of {subject}: {limit} {what}; retry in {retry_after:g} s",
            code="rate_limit_exceeded",
        )


class BudgetExceeded(RequestError):
    """A request could cost more than ``subject``'s budget has left."""

    status = 429
    error_type = "insufficient_quota"

    def __init__(self, subject: str, left: float, needed: float, unit: str) -> None:
        self.subject = subject
        super().__init__(
            f"budget of {subject} exceeded: {left:g} {unit} left, this request may cost "
            f"up to {needed:g} {unit}",
            code="insufficient_quota",
        )


class LimitStoreUnavailable(RequestError):
    """The store holding shared rate limits and budgets (Redis) did not answer.

    Governance fails closed by default: a request that cannot be counted is refused
    rather than served unchecked (``governance.redis_backend`` documents ``fail_open``).
    """

    status = 503
    error_type = "service_unavailable"


class AgentError(PilothouseError):
    """An agent run cannot go on (its model or tool gateway failed, or a resume was
    refused); the run is recorded ``failed`` with this message."""


class RunInProgress(AgentError):
    """Another process is running this run (it holds the run's lease): nothing was done
    and nothing recorded; try again once it finished or its lease ran out."""


class UpstreamError(RequestError):
    status = 502
    error_type = "upstream_error"


class UpstreamTimeout(RequestError):
    status = 504
    error_type = "upstream_timeout"

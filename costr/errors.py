"""Costr's error tree. Each error has a neutral `kind`; every API format maps kinds to its own
error shape once (see each format's `error_body`), and the status code lives here."""
from __future__ import annotations


class CostrError(Exception):
    status = 500
    kind = "internal"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}


class InvalidRequest(CostrError):
    status = 400
    kind = "invalid_request"


class AuthenticationFailed(CostrError):
    status = 401
    kind = "authentication"
    code = "invalid_api_key"


class PermissionDenied(CostrError):
    status = 403
    kind = "permission"


class InsufficientCredits(CostrError):
    status = 402
    kind = "insufficient_credits"
    code = "insufficient_quota"


class NotFound(CostrError):
    status = 404
    kind = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class RateLimited(CostrError):
    status = 429
    kind = "rate_limit"
    code = "rate_limit_exceeded"


class NoUsableProvider(CostrError):
    status = 503
    kind = "unavailable"
    code = "no_usable_provider"


class CircuitOpen(NoUsableProvider):
    """Every candidate model is behind an open circuit breaker (its upstream failed recently);
    `headers` carry Retry-After: when the first of them lets a probe request through."""
    code = "upstream_circuit_open"


class DatabaseUnavailable(CostrError):
    """The database holding keys, credits and the ledger cannot be reached (restarting, or
    the network to it is down). Nothing was charged; the client may ask again shortly."""
    status = 503
    kind = "unavailable"
    code = "database_unavailable"
    RETRY_AFTER_SECONDS = 2

    def __init__(self, message: str = "Costr cannot reach its database just now; nothing was "
                 "charged. Ask again in a few seconds.", **kw):
        super().__init__(message, **kw)
        self.headers.setdefault("retry-after", str(self.RETRY_AFTER_SECONDS))


class UpstreamError(CostrError):
    """The upstream answered with an error. `upstream_status` is what it sent (0: no answer:
    could not connect, timed out, broke off); `retry_after`, in seconds, what it asked for in
    a Retry-After header, if anything."""
    status = 502
    kind = "upstream"
    code = "upstream_error"

    def __init__(self, message: str, *, upstream_status: int = 0, retryable: bool = True,
                 upstream_body: object = None, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.upstream_status = upstream_status
        self.retryable = retryable
        self.upstream_body = upstream_body  # the upstream's parsed error body, for same-format relay
        self.retry_after = retry_after

    def as_client_mistake(self) -> "UpstreamError":
        """The upstream rejected the request as malformed: the client's 400, same words."""
        self.status, self.kind, self.code = 400, "invalid_request", "upstream_rejected_request"
        return self


class UpstreamTimeout(UpstreamError):
    status = 504
    kind = "timeout"
    code = "upstream_timeout"


class ConfigError(Exception):
    """A configuration file is invalid. `problems` are lines `file:line: key.path: reason`."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# Costr's own endpoints answer errors in this shape, which is also OpenAI's.
_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "insufficient_credits": "insufficient_quota",
    "not_found": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "upstream": "upstream_error",
    "timeout": "timeout_error",
    "unavailable": "service_unavailable",
    "internal": "server_error",
}


def default_error_body(error: CostrError) -> dict:
    """`{"error": {"message", "type", "param", "code"}}`"""
    return {"error": {"message": error.message, "type": _TYPES.get(error.kind, "server_error"),
                      "param": error.param, "code": error.code}}

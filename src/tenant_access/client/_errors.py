"""The client's exceptions and the one function that turns an error answer into one of them.

The class is chosen by HTTP status first, because both wire styles agree on statuses while their
codes differ (``NOT_FOUND`` vs ``ResourceNotFound``); the code table below is only consulted for
statuses the tree has no class for. The raw code is always kept on :attr:`ApiError.code`.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import json
from dataclasses import dataclass
from typing import Any

import httpx


class TenantAccessError(Exception):
    """Base of everything the client raises on purpose."""


class TransportError(TenantAccessError):
    """No usable answer: the connection failed, timed out, broke, or TLS was refused.

    The request may or may not have reached the server; ``__cause__`` holds httpx's exception.
    """


class UnexpectedResponse(TenantAccessError):
    """A success status whose body the client cannot read: usually a wrong ``endpoint`` (another
    service, a proxy page) or a server speaking neither wire style."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One field at fault. ``field`` is the seed's ``field`` or Azure's ``target``."""

    field: str | None
    message: str
    code: str | None = None


class ApiError(TenantAccessError):
    """The server answered, and said no.

    ``code`` is the code as sent (seed ``VALIDATION_ERROR`` or Azure ``ValidationError``), ``None``
    when the body had none (a ``HEAD`` answer, a proxy page). ``retry_after`` (seconds) is set
    when the server sent ``Retry-After``, which only back-pressure answers do.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        request_id: str | None = None,
        details: tuple[ErrorDetail, ...] = (),
        target: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.details = details
        self.target = target
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = f"{self.status} {self.code or '-'}: {self.message}"
        if self.details:
            text += " [" + "; ".join(f"{d.field or '-'}: {d.message}" for d in self.details) + "]"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text


class ValidationError(ApiError):
    """400: the request broke a rule; :attr:`details` names every field at fault."""


class AuthenticationError(ApiError):
    """401: no credential, or one the server did not accept."""


class PermissionDenied(ApiError):
    """403: the credential is valid but may not do this."""


class NotFound(ApiError):
    """404: no such service (or no such operation at this path)."""


class Conflict(ApiError):
    """409: the change contradicts the current state (e.g. moving a service to another location)."""


class PreconditionFailed(ApiError):
    """412: ``If-Match`` named an entity tag that is no longer current; nothing was changed."""


class RateLimited(ApiError):
    """429: too many requests; wait :attr:`retry_after` seconds (when sent) before retrying."""


class ServerError(ApiError):
    """5xx: the server failed or is busy; when :attr:`retry_after` is set, retrying is invited."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    429: RateLimited,
}

#: Both styles' codes, for statuses the table above does not decide.
_BY_CODE: dict[str, type[ApiError]] = {
    "VALIDATION_ERROR": ValidationError, "ValidationError": ValidationError,
    "MissingApiVersionParameter": ValidationError, "InvalidApiVersionParameter": ValidationError,
    "UNAUTHORIZED": AuthenticationError, "AuthenticationFailed": AuthenticationError,
    "InvalidAuthenticationToken": AuthenticationError,
    "FORBIDDEN": PermissionDenied, "AuthorizationFailed": PermissionDenied,
    "NOT_FOUND": NotFound, "ResourceNotFound": NotFound, "ResourceGroupNotFound": NotFound,
    "ParentResourceNotFound": NotFound,
    "CONFLICT": Conflict, "Conflict": Conflict, "InvalidResourceLocation": Conflict,
    "PRECONDITION_FAILED": PreconditionFailed, "PreconditionFailed": PreconditionFailed,
    "TOO_MANY_REQUESTS": RateLimited, "TooManyRequests": RateLimited,
    "SERVICE_UNAVAILABLE": ServerError, "ServiceUnavailable": ServerError,
    "INTERNAL_ERROR": ServerError, "InternalServerError": ServerError,
}


def error_class(status: int, code: str | None) -> type[ApiError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    return ApiError


def request_id_of(response: httpx.Response) -> str | None:
    found: str | None = response.headers.get("x-ms-request-id") or response.headers.get("x-request-id")
    return found


def retry_after_of(response: httpx.Response) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or an HTTP date) or Azure's millisecond headers."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        raw = response.headers.get(name)
        if raw is not None:
            try:
                return max(0.0, float(raw) / 1000)
            except ValueError:
                pass
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return max(0.0, (when - _dt.datetime.now(_dt.UTC)).total_seconds())


def _details(raw: Any) -> tuple[ErrorDetail, ...]:
    if not isinstance(raw, list):
        return ()
    found = []
    for item in raw:
        if isinstance(item, dict):
            where = item.get("field", item.get("target"))
            code = item.get("code")
            found.append(ErrorDetail(
                field=where if isinstance(where, str) else None,
                message=str(item.get("message", "")),
                code=code if isinstance(code, str) else None,
            ))
    return tuple(found)


def from_response(response: httpx.Response) -> ApiError:
    """The exception for an error answer in either wire style (or in none, from a proxy)."""
    request_id = request_id_of(response)
    code: str | None = None
    message = response.reason_phrase or f"HTTP {response.status_code}"
    details: tuple[ErrorDetail, ...] = ()
    target: str | None = None
    body: Any = None
    if response.content:
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        # Seed: {"success": false, "error": {code, message, details[field, message], request_id}}
        # Azure: {"error": {code, message, target, details[code, target, message]}}
        if isinstance(error.get("code"), str):
            code = error["code"]
        if isinstance(error.get("message"), str):
            message = error["message"]
        if isinstance(error.get("target"), str):
            target = error["target"]
        if isinstance(error.get("request_id"), str) and not request_id:
            request_id = error["request_id"]
        details = _details(error.get("details"))
    cls = error_class(response.status_code, code)
    return cls(message, status=response.status_code, code=code, request_id=request_id, details=details,
               target=target, retry_after=retry_after_of(response))

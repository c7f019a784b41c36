"""The error classes the domain raises.

Every error carries both of its wire names: the seed envelope's code (``VALIDATION_ERROR``) and the
code Azure Resource Manager uses for the same situation (``ValidationError``), so that the HTTP layer
only has to pick one, never to guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FieldError:
    """One bad input: where it was (``path.accessName``, ``header.If-Match``, ``body.properties.enabled``)."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class TenantAccessError(Exception):
    """Base of every error that maps to an HTTP answer."""

    status: int = 500
    code: str = "INTERNAL_ERROR"
    azure_code: str = "InternalServerError"

    def __init__(
        self,
        message: str,
        *,
        details: list[FieldError] | None = None,
        azure_code: str | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[FieldError] = list(details or [])
        if azure_code is not None:
            self.azure_code = azure_code
        self.target = target
        self.headers: dict[str, str] = {}


class ValidationFailed(TenantAccessError):
    status = 400
    code = "VALIDATION_ERROR"
    azure_code = "ValidationError"


class AuthenticationFailed(TenantAccessError):
    status = 401
    code = "UNAUTHORIZED"
    azure_code = "AuthenticationFailed"


class Forbidden(TenantAccessError):
    status = 403
    code = "FORBIDDEN"
    azure_code = "AuthorizationFailed"


class NotFound(TenantAccessError):
    status = 404
    code = "NOT_FOUND"
    azure_code = "ResourceNotFound"


class MethodNotAllowed(TenantAccessError):
    status = 405
    code = "METHOD_NOT_ALLOWED"
    azure_code = "MethodNotAllowed"

    def __init__(self, message: str, *, allow: list[str]) -> None:
        super().__init__(message)
        self.headers["Allow"] = ", ".join(allow)


class Conflict(TenantAccessError):
    status = 409
    code = "CONFLICT"
    azure_code = "Conflict"


class PreconditionFailed(TenantAccessError):
    status = 412
    code = "PRECONDITION_FAILED"
    azure_code = "PreconditionFailed"


class RequestTimeout(TenantAccessError):
    """The request (headers and body) did not arrive within the server's deadline; refused by the
    HTTP protocol layer, which then closes the connection."""

    status = 408
    code = "REQUEST_TIMEOUT"
    azure_code = "RequestTimeout"


class PayloadTooLarge(TenantAccessError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"
    azure_code = "RequestEntityTooLarge"


class UnsupportedMediaType(TenantAccessError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"
    azure_code = "UnsupportedMediaType"


class UriTooLong(TenantAccessError):
    """Refused by the HTTP protocol layer, before the request reaches the application."""

    status = 414
    code = "URI_TOO_LONG"
    azure_code = "RequestUriTooLong"


class HeadersTooLarge(TenantAccessError):
    """Refused by the HTTP protocol layer, before the request reaches the application."""

    status = 431
    code = "HEADERS_TOO_LARGE"
    azure_code = "RequestHeaderFieldsTooLarge"


class TooManyRequests(TenantAccessError):
    """Throttled. ``Retry-After`` is sent only here and with 503: azure-core retries any error
    that carries it, so an ordinary 4xx must never have one."""

    status = 429
    code = "TOO_MANY_REQUESTS"
    azure_code = "TooManyRequests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after)


class ServiceUnavailable(TenantAccessError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
    azure_code = "ServiceUnavailable"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after)


class InternalError(TenantAccessError):
    """A fault of ours. Its message is generic on purpose: the cause goes to the log, never the wire."""


@dataclass
class Problems:
    """Collects field errors so one response can name every bad field at once."""

    items: list[FieldError] = field(default_factory=list)

    def add(self, field_name: str, message: str) -> None:
        self.items.append(FieldError(field_name, message))

    def raise_if_any(self, message: str = "The request is not valid.") -> None:
        """One problem is named in the message itself: most clients show only the message, and
        "The request is not valid." alone sends the reader to ``details`` for the useful part."""
        if self.items:
            if len(self.items) == 1:
                only = self.items[0]
                message = f"{message.rstrip('.')}: {only.field} {only.message}."
            raise ValidationFailed(message, details=self.items, target=self.items[0].field)

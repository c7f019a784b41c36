"""A Python client for tenant-access servers and the Azure API Management tenant access API.

::

    from tenant_access.client import Client, AccessRef

    target = AccessRef("00000000-0000-0000-0000-000000000000", "demo-rg", "demo-apim", "access")
    with Client(endpoint="http://127.0.0.1:8700") as client:
        client.regenerate_secondary_key(target)
        secrets = client.list_secrets(target)

It speaks both wire styles the server offers (the seed envelope and Azure Resource Manager's
shapes) and by default tells them apart per answer; see ``docs/client.md``. It imports httpx and
nothing of the server, so installing or importing it stays light.

Exceptions, all importable from this package::

    TenantAccessError             everything raised on purpose
    ├── TransportError            no answer: connection refused or broken, timeout, TLS
    ├── UnexpectedResponse        a success status with a body neither style explains
    └── ApiError                  an error answer: .status .code .message .request_id .details
        ├── ValidationError       400  (VALIDATION_ERROR / ValidationError, api-version problems)
        ├── AuthenticationError   401  (UNAUTHORIZED / AuthenticationFailed, InvalidAuthenticationToken)
        ├── PermissionDenied      403  (FORBIDDEN / AuthorizationFailed)
        ├── NotFound              404  (NOT_FOUND / ResourceNotFound)
        ├── Conflict              409  (CONFLICT / Conflict)
        ├── PreconditionFailed    412  (PRECONDITION_FAILED / PreconditionFailed)
        ├── RateLimited           429  .retry_after
        └── ServerError           5xx  .retry_after when sent (SERVICE_UNAVAILABLE, INTERNAL_ERROR, ...)

The class follows the HTTP status (both styles agree on it); ``code`` keeps the style's own code.
Other statuses (405, 413, 415) raise plain :class:`ApiError`.
"""

from tenant_access.client import webhooks
from tenant_access.client._auth import BearerToken, SharedAccessSignature, sas_expiry, sas_token
from tenant_access.client._client import AsyncClient, Client
from tenant_access.client._errors import (
    ApiError,
    AuthenticationError,
    Conflict,
    ErrorDetail,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
    ServerError,
    TenantAccessError,
    TransportError,
    UnexpectedResponse,
    ValidationError,
)
from tenant_access.client._models import (
    AccessConfiguration,
    AccessRef,
    AuditEvent,
    EventSubscription,
    KeySlot,
    KeyUsage,
    KeyUse,
    KeyVersion,
    NewKey,
    RotationResult,
    Secrets,
    Service,
    ServiceRef,
)
from tenant_access.client._rotate import rotate, rotate_async

__all__ = [
    "AccessConfiguration",
    "AccessRef",
    "ApiError",
    "AsyncClient",
    "AuditEvent",
    "AuthenticationError",
    "BearerToken",
    "Client",
    "Conflict",
    "ErrorDetail",
    "EventSubscription",
    "KeySlot",
    "KeyUsage",
    "KeyUse",
    "KeyVersion",
    "NewKey",
    "NotFound",
    "PermissionDenied",
    "PreconditionFailed",
    "RateLimited",
    "RotationResult",
    "Secrets",
    "ServerError",
    "Service",
    "ServiceRef",
    "SharedAccessSignature",
    "TenantAccessError",
    "TransportError",
    "UnexpectedResponse",
    "ValidationError",
    "rotate",
    "rotate_async",
    "sas_expiry",
    "sas_token",
    "webhooks",
]

# Objects say they come from here, not from the private modules (as httpx does), so that
# tracebacks and reprs show the import path users should use.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or (callable(_obj) and hasattr(_obj, "__code__")):
        _obj.__module__ = __name__
del _name, _obj

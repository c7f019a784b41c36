"""The exception tree: real bad requests against real servers, and the statuses a local server does
not produce (401, 403, 429, 5xx) through a mock transport in both wire styles."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

import tenant_access.client as ta
from tenant_access.client import (
    AccessRef,
    ApiError,
    AuthenticationError,
    Client,
    Conflict,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
    ServerError,
    ServiceRef,
    TenantAccessError,
    TransportError,
    UnexpectedResponse,
    ValidationError,
)
from tests.client.conftest import SERVICE_FIELDS, ClientFactory, new_service_ref


def test_the_tree_is_as_documented() -> None:
    for cls in (ValidationError, AuthenticationError, PermissionDenied, NotFound, Conflict, PreconditionFailed,
                RateLimited, ServerError):
        assert issubclass(cls, ApiError)
        assert cls.__name__ in (ta.__doc__ or "")
    for base in (ApiError, TransportError, UnexpectedResponse):
        assert issubclass(base, TenantAccessError)
    assert issubclass(TenantAccessError, Exception)


def test_a_missing_service_is_not_found(client: Client, style: str) -> None:
    with pytest.raises(NotFound) as caught:
        client.get_service(new_service_ref())
    error = caught.value
    assert error.status == 404
    assert error.code == ("NOT_FOUND" if style == "seed" else "ResourceNotFound")
    assert error.message
    assert error.request_id
    with pytest.raises(NotFound):
        client.list_secrets(new_service_ref().access())


def test_a_bad_api_version_is_a_validation_error_naming_the_field(make_client: ClientFactory, style: str) -> None:
    client = make_client(api_version="yesterday")
    with pytest.raises(ValidationError) as caught:
        client.get_service(new_service_ref())
    error = caught.value
    assert error.status == 400
    assert error.code is not None
    assert "query.api-version" in {d.field for d in error.details}
    assert error.request_id
    assert "400" in str(error) and error.request_id in str(error)


def test_several_bad_parameters_are_all_named(client: Client, service: ServiceRef) -> None:
    bad = AccessRef(service.subscription_id, service.resource_group, "-bad-name-", "nope")
    with pytest.raises(ValidationError) as caught:
        client.get_access(bad)
    assert {"path.serviceName", "path.accessName"} <= {d.field for d in caught.value.details}


def test_a_path_cannot_be_smuggled_through_a_name(client: Client, service: ServiceRef) -> None:
    sneaky = AccessRef(service.subscription_id, service.resource_group, f"{service.service_name}/tenant/access", "x")
    with pytest.raises((ValidationError, NotFound)):
        client.regenerate_primary_key(sneaky)


def test_moving_a_service_is_a_conflict(client: Client, service: ServiceRef, style: str) -> None:
    with pytest.raises(Conflict) as caught:
        client.create_or_update_service(service, **{**SERVICE_FIELDS, "location": "East US"})
    assert caught.value.status == 409
    assert caught.value.code in ({"CONFLICT"} if style == "seed" else {"Conflict", "InvalidResourceLocation"})


def test_a_stale_etag_is_a_failed_precondition_and_changes_nothing(client: Client, service: ServiceRef) -> None:
    target = service.access()
    stale = client.get_etag(target)
    client.regenerate_secondary_key(target)
    with pytest.raises(PreconditionFailed) as caught:
        client.enable(target, if_match=stale)
    assert caught.value.status == 412
    with pytest.raises(PreconditionFailed):
        client.replace_access(target, principal_id="someone", if_match=stale)
    config = client.get_access(target)
    assert (config.enabled, config.principal_id) == (False, "integration")
    assert client.enable(target, if_match=config.etag or "").enabled is True


def test_an_unreachable_server_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Client(endpoint=f"http://127.0.0.1:{port}", timeout=2) as client, pytest.raises(TransportError) as caught:
        client.get_service(new_service_ref())
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


# -- statuses a local server does not produce, in both styles -------------------------------------


def _seed(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"success": False, "error": {"code": code, "message": "no", "request_id": "rid-seed"}}
    return httpx.Response(status, json=body, headers={"X-Request-Id": "rid-seed", **(headers or {})})


def _azure(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": "no", "target": "x",
                      "details": [{"code": code, "target": "header.Authorization", "message": "bad"}]}}
    return httpx.Response(status, json=body, headers={"x-ms-request-id": "rid-azure", **(headers or {})})


def _mocked(response: httpx.Response) -> Client:
    return Client(endpoint="http://mock", transport=httpx.MockTransport(lambda request: response))


@pytest.mark.parametrize(("response", "cls", "code", "request_id"), [
    (_seed(401, "UNAUTHORIZED"), AuthenticationError, "UNAUTHORIZED", "rid-seed"),
    (_azure(401, "InvalidAuthenticationToken"), AuthenticationError, "InvalidAuthenticationToken", "rid-azure"),
    (_seed(403, "FORBIDDEN"), PermissionDenied, "FORBIDDEN", "rid-seed"),
    (_azure(403, "AuthorizationFailed"), PermissionDenied, "AuthorizationFailed", "rid-azure"),
    (_seed(503, "SERVICE_UNAVAILABLE"), ServerError, "SERVICE_UNAVAILABLE", "rid-seed"),
    (_azure(500, "InternalServerError"), ServerError, "InternalServerError", "rid-azure"),
    (_seed(405, "METHOD_NOT_ALLOWED"), ApiError, "METHOD_NOT_ALLOWED", "rid-seed"),
    (httpx.Response(502, text="<html>bad gateway</html>"), ServerError, None, None),
])
def test_each_status_maps_to_its_class(response: httpx.Response, cls: type[ApiError], code: str | None,
                                       request_id: str | None) -> None:
    with _mocked(response) as client, pytest.raises(ApiError) as caught:
        client.get_service(new_service_ref())
    assert type(caught.value) is cls
    assert caught.value.code == code
    assert caught.value.request_id == request_id
    assert caught.value.retry_after is None


def test_azure_details_keep_their_target_and_code() -> None:
    with _mocked(_azure(401, "AuthenticationFailed")) as client, pytest.raises(AuthenticationError) as caught:
        client.get_service(new_service_ref())
    assert caught.value.target == "x"
    detail = caught.value.details[0]
    assert (detail.field, detail.message, detail.code) == ("header.Authorization", "bad", "AuthenticationFailed")


@pytest.mark.parametrize("make", [_seed, _azure])
def test_back_pressure_carries_retry_after(make: Any) -> None:
    with _mocked(make(429, "TooManyRequests", {"Retry-After": "7"})) as client, pytest.raises(RateLimited) as caught:
        client.list_secrets(new_service_ref().access())
    assert caught.value.status == 429
    assert caught.value.retry_after == 7.0
    with _mocked(make(503, "ServiceUnavailable", {"Retry-After": "2"})) as client, \
            pytest.raises(ServerError) as server_error:
        client.regenerate_primary_key(new_service_ref().access())
    assert server_error.value.retry_after == 2.0
    with _mocked(make(429, "TooManyRequests", {"x-ms-retry-after-ms": "1500"})) as client, \
            pytest.raises(RateLimited) as in_ms:
        client.get_etag(new_service_ref().access())
    assert in_ms.value.retry_after == 1.5


def test_a_success_answer_from_something_else_is_unexpected() -> None:
    with _mocked(httpx.Response(200, text="<html>portal</html>")) as client, pytest.raises(UnexpectedResponse):
        client.get_service(new_service_ref())
    with _mocked(httpx.Response(200, json={"hello": "world"})) as client, pytest.raises(UnexpectedResponse):
        client.get_service(new_service_ref())


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="api_style"):
        Client(api_style="soap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="endpoint"):
        Client(endpoint="ftp://example")

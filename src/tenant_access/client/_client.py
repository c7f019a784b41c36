"""The two clients. They share every operation (``_protocol``) and differ only in carrying requests."""

from __future__ import annotations

import datetime as _dt
import ssl
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import httpx

from tenant_access import __version__
from tenant_access.client._errors import TenantAccessError, TransportError, from_response
from tenant_access.client._models import (
    AccessConfiguration,
    AccessRef,
    AuditEvent,
    EventSubscription,
    KeySlot,
    KeyUsage,
    KeyVersion,
    Secrets,
    Service,
    ServiceRef,
)
from tenant_access.client._protocol import DEFAULT_API_VERSION, ApiStyle, Call, Op, Protocol
from tenant_access.client._wire import Style

T = TypeVar("T")
DEFAULT_ENDPOINT = "http://127.0.0.1:8700"
DEFAULT_TIMEOUT = 10.0
USER_AGENT = f"tenant-access-client/{__version__} httpx/{httpx.__version__}"

Verify = ssl.SSLContext | str | bool
Timeout = float | httpx.Timeout | None


def _verify(verify: Verify) -> ssl.SSLContext | bool:
    """A CA bundle path becomes a context here: httpx deprecates passing it as a string."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def _service_body(
    location: str, sku_name: str, sku_capacity: int, publisher_email: str, publisher_name: str,
    tags: Mapping[str, str] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "location": location,
        "sku": {"name": sku_name, "capacity": sku_capacity},
        "properties": {"publisherEmail": publisher_email, "publisherName": publisher_name},
    }
    if tags is not None:
        body["tags"] = dict(tags)
    return body


def _access_properties(
    principal_id: str | None, enabled: bool | None, primary_key: str | None, secondary_key: str | None,
) -> dict[str, Any]:
    given = {"principalId": principal_id, "enabled": enabled, "primaryKey": primary_key, "secondaryKey": secondary_key}
    return {k: v for k, v in given.items() if v is not None}


def _transport_error(call: Call, exc: httpx.RequestError) -> TransportError:
    return TransportError(f"{call.method} {httpx.URL(call.url).path}: {type(exc).__name__}: {exc}")


class _Options:
    """What both clients are configured with."""

    def __init__(self, endpoint: str, api_version: str, api_style: ApiStyle) -> None:
        self.endpoint = httpx.URL(endpoint.rstrip("/"))
        if self.endpoint.scheme not in ("http", "https"):
            raise ValueError(f"endpoint must be an http:// or https:// URL, not {endpoint!r}")
        self.protocol = Protocol(endpoint=self.endpoint, api_version=api_version, api_style=api_style)
        self.api_style = api_style


class Client:
    """A blocking client for one tenant-access (or Azure API Management) endpoint.

    Use it as a context manager, or call :meth:`close`, so its connections are released. It is
    safe to share between threads, as the underlying ``httpx.Client`` is.

    ``api_style="auto"`` (the default) reads each answer in the style it is in (the rules are in
    ``docs/client.md``); name the style to refuse anything else. ``transport`` replaces the
    network (``httpx.MockTransport``, a bridge to an app in-process); ``verify`` is then the
    transport's business. The client never retries: errors carry ``retry_after`` so the caller,
    who knows whether the operation is safe to repeat, decides.
    """

    def __init__(
        self,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        credential: httpx.Auth | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        verify: Verify = True,
        api_style: ApiStyle = "auto",
        api_version: str = DEFAULT_API_VERSION,
    ) -> None:
        self._options = _Options(endpoint, api_version, api_style)
        self._proto = self._options.protocol
        self._http = httpx.Client(
            base_url=self._options.endpoint, auth=credential, timeout=timeout, transport=transport,
            verify=_verify(verify), headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def endpoint(self) -> str:
        return str(self._options.endpoint)

    @property
    def api_version(self) -> str:
        return self._proto.api_version

    @property
    def api_style(self) -> ApiStyle:
        return self._options.api_style

    @property
    def detected_style(self) -> Style | None:
        """The style the server's answers were in (``None`` before the first answer in auto mode)."""
        return self._proto.detected

    def _send(self, call: Call) -> httpx.Response:
        try:
            response = self._http.request(call.method, call.url, params=call.params or None, headers=call.headers,
                                          json=call.json)
        except httpx.RequestError as exc:
            raise _transport_error(call, exc) from exc
        if not response.is_success:
            raise from_response(response)
        return response

    def _run(self, op: Op[T]) -> T:
        try:
            call = next(op)
            while True:
                try:
                    response = self._send(call)
                except TenantAccessError as exc:
                    call = op.throw(exc)
                else:
                    call = op.send(response)
        except StopIteration as stop:
            return cast(T, stop.value)

    # -- services --------------------------------------------------------------------------------

    def create_or_update_service(
        self, service: ServiceRef, *, location: str, publisher_email: str, publisher_name: str,
        sku_name: str = "Developer", sku_capacity: int = 1, tags: Mapping[str, str] | None = None,
    ) -> Service:
        """Create the service (and both its access configurations, with fresh keys) or update it.
        Updating never touches keys; a service cannot change location (:class:`Conflict`)."""
        body = _service_body(location, sku_name, sku_capacity, publisher_email, publisher_name, tags)
        return self._run(self._proto.create_or_update_service(service, body))

    def get_service(self, service: ServiceRef) -> Service:
        return self._run(self._proto.get_service(service))

    def list_services(self, subscription_id: str, resource_group: str) -> list[Service]:
        """Every service of the resource group, all pages read."""
        return self._run(self._proto.list_services(subscription_id, resource_group))

    def delete_service(self, service: ServiceRef) -> bool:
        """Delete the service and all its keys. ``False`` when there was nothing to delete, in
        both styles (seed answers 404, Azure 204), so deleting is idempotent."""
        return self._run(self._proto.delete_service(service))

    # -- event subscriptions (the server's extension; docs/events.md) ----------------------------

    def put_event_subscription(self, service: ServiceRef, name: str, destination: str, *,
                               event_types: Sequence[str] = (), schema: str = "CloudEventSchemaV1_0",
                               secret: str | None = None) -> EventSubscription:
        """Create or replace; the server runs the destination's webhook handshake first and
        refuses (``ValidationError``) a destination that does not answer it."""
        return self._run(self._proto.put_event_subscription(service, name, destination, tuple(event_types), schema,
                                                            secret))

    def get_event_subscription(self, service: ServiceRef, name: str) -> EventSubscription:
        return self._run(self._proto.get_event_subscription(service, name))

    def list_event_subscriptions(self, service: ServiceRef) -> list[EventSubscription]:
        return self._run(self._proto.list_event_subscriptions(service))

    def delete_event_subscription(self, service: ServiceRef, name: str) -> bool:
        """``False`` when there was nothing to delete."""
        return self._run(self._proto.delete_event_subscription(service, name))

    # -- access configurations -------------------------------------------------------------------

    def list_access(self, service: ServiceRef) -> list[AccessConfiguration]:
        return self._run(self._proto.list_access(service))

    def get_access(self, target: AccessRef) -> AccessConfiguration:
        """The configuration (never its keys), with the entity tag to pass as ``if_match``."""
        return self._run(self._proto.get_access(target))

    def get_etag(self, target: AccessRef) -> str:
        """Only the entity tag (a ``HEAD`` request), unquoted."""
        return self._run(self._proto.get_etag(target))

    def replace_access(
        self, target: AccessRef, *, principal_id: str | None = None, enabled: bool | None = None,
        primary_key: str | None = None, secondary_key: str | None = None, if_match: str = "*",
    ) -> AccessConfiguration:
        """``PUT`` the configuration. Fields left ``None`` keep their value; a caller-chosen key
        replaces the stored one. ``if_match="*"`` applies whatever the current state; pass an
        etag from :meth:`get_access` to get :class:`PreconditionFailed` if it changed meanwhile."""
        properties = _access_properties(principal_id, enabled, primary_key, secondary_key)
        return self._run(self._proto.replace_access(target, properties, if_match))

    def update_access(self, target: AccessRef, *, enabled: bool, if_match: str = "*") -> AccessConfiguration:
        """``PATCH`` the configuration; ``enabled`` is the only property the API lets you patch."""
        return self._run(self._proto.update_access(target, enabled, if_match))

    def enable(self, target: AccessRef, *, if_match: str = "*") -> AccessConfiguration:
        return self.update_access(target, enabled=True, if_match=if_match)

    def disable(self, target: AccessRef, *, if_match: str = "*") -> AccessConfiguration:
        return self.update_access(target, enabled=False, if_match=if_match)

    def list_secrets(self, target: AccessRef) -> Secrets:
        """Both keys. The only call that returns key material; the result masks it in ``repr``."""
        return self._run(self._proto.list_secrets(target))

    def regenerate_primary_key(self, target: AccessRef) -> KeyVersion:
        return self._run(self._proto.regenerate(target, "primary"))

    def regenerate_secondary_key(self, target: AccessRef) -> KeyVersion:
        return self._run(self._proto.regenerate(target, "secondary"))

    def regenerate_key(self, target: AccessRef, slot: KeySlot, *, if_unused_for: str | None = None) -> KeyVersion:
        """Either key, by name; what :func:`rotate` uses. With ``if_unused_for`` (an ISO 8601
        duration, ``"PT15M"``) the server refuses with :class:`Conflict` (409, naming the last use)
        to regenerate a key used within that window."""
        return self._run(self._proto.regenerate(target, slot, if_unused_for=if_unused_for))

    def key_usage(self, target: AccessRef) -> KeyUsage:
        """When each key last authenticated a request (to the minute) and how often."""
        return self._run(self._proto.key_usage(target))

    def get_rotation_policy(self, target: AccessRef) -> dict[str, Any]:
        """The policy (Key Vault's shape plus ``gracePeriod``) with its ``status``: next due times,
        last outcome, ``blockedSince``. :class:`NotFound` when there is none."""
        found: dict[str, Any] = self._run(self._proto.rotation_policy(target))
        return found

    def set_rotation_policy(self, target: AccessRef, document: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = self._run(self._proto.rotation_policy(target, "PUT", document))
        return found

    def delete_rotation_policy(self, target: AccessRef) -> bool:
        """``False`` when there was none."""
        return bool(self._run(self._proto.rotation_policy(target, "DELETE"))["deleted"])

    def regenerate_git_primary_key(self, target: AccessRef) -> KeyVersion:
        """The git route; it always acts on ``gitAccess`` whatever ``target.access_name`` says."""
        return self._run(self._proto.regenerate(target, "primary", git=True))

    def regenerate_git_secondary_key(self, target: AccessRef) -> KeyVersion:
        return self._run(self._proto.regenerate(target, "secondary", git=True))

    # -- audit -----------------------------------------------------------------------------------

    def list_audit_events(
        self, service: ServiceRef, *, operation: str | None = None, since: _dt.datetime | None = None,
        until: _dt.datetime | None = None, top: int | None = None, kind: str | None = None,
    ) -> list[AuditEvent]:
        """The service's audit records, oldest first, all pages read (at most ``top`` of them).

        ``operation`` is a route's operation name (``access.regenerate_secondary_key``); ``kind`` one
        of ``changes``, ``reads``, ``refusals``; ``since`` and ``until`` are timezone-aware. A server
        without the audit route gives ``[]`` for an existing service (and :class:`NotFound` for a
        missing one).
        """
        return self._run(self._proto.list_audit_events(service, operation=operation, since=since, until=until,
                                                       top=top, kind=kind))


class AsyncClient:
    """The asyncio twin of :class:`Client`: same options, same methods, awaited.

    ``transport`` is an ``httpx.AsyncBaseTransport``, e.g. ``httpx.ASGITransport(app)`` to run
    against an ASGI app in-process. A :class:`BearerToken` callable may be a coroutine function.
    """

    def __init__(
        self,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        credential: httpx.Auth | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: Verify = True,
        api_style: ApiStyle = "auto",
        api_version: str = DEFAULT_API_VERSION,
    ) -> None:
        self._options = _Options(endpoint, api_version, api_style)
        self._proto = self._options.protocol
        self._http = httpx.AsyncClient(
            base_url=self._options.endpoint, auth=credential, timeout=timeout, transport=transport,
            verify=_verify(verify), headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def endpoint(self) -> str:
        return str(self._options.endpoint)

    @property
    def api_version(self) -> str:
        return self._proto.api_version

    @property
    def api_style(self) -> ApiStyle:
        return self._options.api_style

    @property
    def detected_style(self) -> Style | None:
        return self._proto.detected

    async def _send(self, call: Call) -> httpx.Response:
        try:
            response = await self._http.request(call.method, call.url, params=call.params or None, headers=call.headers,
                                                json=call.json)
        except httpx.RequestError as exc:
            raise _transport_error(call, exc) from exc
        if not response.is_success:
            raise from_response(response)
        return response

    async def _run(self, op: Op[T]) -> T:
        try:
            call = next(op)
            while True:
                try:
                    response = await self._send(call)
                except TenantAccessError as exc:
                    call = op.throw(exc)
                else:
                    call = op.send(response)
        except StopIteration as stop:
            return cast(T, stop.value)

    async def create_or_update_service(
        self, service: ServiceRef, *, location: str, publisher_email: str, publisher_name: str,
        sku_name: str = "Developer", sku_capacity: int = 1, tags: Mapping[str, str] | None = None,
    ) -> Service:
        body = _service_body(location, sku_name, sku_capacity, publisher_email, publisher_name, tags)
        return await self._run(self._proto.create_or_update_service(service, body))

    async def get_service(self, service: ServiceRef) -> Service:
        return await self._run(self._proto.get_service(service))

    async def list_services(self, subscription_id: str, resource_group: str) -> list[Service]:
        return await self._run(self._proto.list_services(subscription_id, resource_group))

    async def delete_service(self, service: ServiceRef) -> bool:
        return await self._run(self._proto.delete_service(service))

    async def put_event_subscription(self, service: ServiceRef, name: str, destination: str, *,
                                     event_types: Sequence[str] = (), schema: str = "CloudEventSchemaV1_0",
                                     secret: str | None = None) -> EventSubscription:
        return await self._run(self._proto.put_event_subscription(service, name, destination, tuple(event_types),
                                                                  schema, secret))

    async def get_event_subscription(self, service: ServiceRef, name: str) -> EventSubscription:
        return await self._run(self._proto.get_event_subscription(service, name))

    async def list_event_subscriptions(self, service: ServiceRef) -> list[EventSubscription]:
        return await self._run(self._proto.list_event_subscriptions(service))

    async def delete_event_subscription(self, service: ServiceRef, name: str) -> bool:
        return await self._run(self._proto.delete_event_subscription(service, name))

    async def list_access(self, service: ServiceRef) -> list[AccessConfiguration]:
        return await self._run(self._proto.list_access(service))

    async def get_access(self, target: AccessRef) -> AccessConfiguration:
        return await self._run(self._proto.get_access(target))

    async def get_etag(self, target: AccessRef) -> str:
        return await self._run(self._proto.get_etag(target))

    async def replace_access(
        self, target: AccessRef, *, principal_id: str | None = None, enabled: bool | None = None,
        primary_key: str | None = None, secondary_key: str | None = None, if_match: str = "*",
    ) -> AccessConfiguration:
        properties = _access_properties(principal_id, enabled, primary_key, secondary_key)
        return await self._run(self._proto.replace_access(target, properties, if_match))

    async def update_access(self, target: AccessRef, *, enabled: bool, if_match: str = "*") -> AccessConfiguration:
        return await self._run(self._proto.update_access(target, enabled, if_match))

    async def enable(self, target: AccessRef, *, if_match: str = "*") -> AccessConfiguration:
        return await self.update_access(target, enabled=True, if_match=if_match)

    async def disable(self, target: AccessRef, *, if_match: str = "*") -> AccessConfiguration:
        return await self.update_access(target, enabled=False, if_match=if_match)

    async def list_secrets(self, target: AccessRef) -> Secrets:
        return await self._run(self._proto.list_secrets(target))

    async def regenerate_primary_key(self, target: AccessRef) -> KeyVersion:
        return await self._run(self._proto.regenerate(target, "primary"))

    async def regenerate_secondary_key(self, target: AccessRef) -> KeyVersion:
        return await self._run(self._proto.regenerate(target, "secondary"))

    async def regenerate_key(self, target: AccessRef, slot: KeySlot, *,
                             if_unused_for: str | None = None) -> KeyVersion:
        return await self._run(self._proto.regenerate(target, slot, if_unused_for=if_unused_for))

    async def key_usage(self, target: AccessRef) -> KeyUsage:
        return await self._run(self._proto.key_usage(target))

    async def regenerate_git_primary_key(self, target: AccessRef) -> KeyVersion:
        return await self._run(self._proto.regenerate(target, "primary", git=True))

    async def regenerate_git_secondary_key(self, target: AccessRef) -> KeyVersion:
        return await self._run(self._proto.regenerate(target, "secondary", git=True))

    async def list_audit_events(
        self, service: ServiceRef, *, operation: str | None = None, since: _dt.datetime | None = None,
        until: _dt.datetime | None = None, top: int | None = None, kind: str | None = None,
    ) -> list[AuditEvent]:
        return await self._run(self._proto.list_audit_events(service, operation=operation, since=since,
                                                             until=until, top=top, kind=kind))

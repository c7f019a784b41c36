"""Every operation once, without I/O, shared by :class:`Client` and :class:`AsyncClient`.

An operation is a generator: it yields the requests it needs and receives the answers (or, for
error answers, the exception thrown into it), and returns the result. The sync and async clients
only differ in how they carry a request, so following a next-page link, re-reading after an old
api-version's bodiless PATCH, or telling "no audit route yet" from "no such service" is written
once, here.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx

from tenant_access.client import _wire as wire
from tenant_access.client._errors import NotFound, UnexpectedResponse
from tenant_access.client._models import (
    PROVIDER,
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

T = TypeVar("T")
ApiStyle = Literal["auto", "seed", "azure"]
API_STYLES = ("auto", "seed", "azure")
DEFAULT_API_VERSION = "2024-05-01"
#: A server that keeps sending next-page links is broken; stop rather than loop forever.
MAX_PAGES = 1000


@dataclass(frozen=True, slots=True)
class Call:
    """One request. ``params`` empty means "the URL's own query string, untouched"."""

    method: str
    url: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None


Op = Generator[Call, httpx.Response, T]


def _seg(value: str) -> str:
    """One path segment, percent-encoded so a name can never add segments of its own."""
    return quote(value, safe="")


def provider_path(subscription_id: str, resource_group: str) -> str:
    return f"/subscriptions/{_seg(subscription_id)}/resourceGroups/{_seg(resource_group)}/providers/{PROVIDER}"


def service_path(ref: ServiceRef) -> str:
    return f"{provider_path(ref.subscription_id, ref.resource_group)}/service/{_seg(ref.service_name)}"


def access_path(target: AccessRef) -> str:
    return f"{service_path(target.service)}/tenant/{_seg(target.access_name)}"


class Protocol:
    def __init__(self, *, endpoint: httpx.URL, api_version: str, api_style: ApiStyle) -> None:
        if api_style not in API_STYLES:
            raise ValueError(f"api_style must be one of {', '.join(API_STYLES)}, not {api_style!r}")
        self.endpoint = endpoint
        self.api_version = api_version
        self.configured: wire.Style | None = None if api_style == "auto" else api_style
        self.detected: wire.Style | None = self.configured

    # -- plumbing --------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None) -> Call:
        return Call(method, path, {"api-version": self.api_version}, headers or {}, json)

    def _read(self, response: httpx.Response) -> tuple[Any, wire.Style]:
        body = wire.body_of(response)
        if self.configured is not None:
            return body, self.configured
        style = wire.detect(response, body) or self.detected
        if style is None:
            raise UnexpectedResponse(
                f"cannot tell the wire style of the answer to {response.request.method} "
                f"{response.request.url.path}; pass api_style='seed' or 'azure'",
                status=response.status_code,
            )
        self.detected = style
        return body, style

    def _data(self, response: httpx.Response) -> tuple[wire.Json, wire.Style]:
        body, style = self._read(response)
        return wire.obj(response, wire.payload(response, body, style)), style

    def _next(self, response: httpx.Response, link: str) -> Call:
        """The request for a next-page link, refused unless it stays on the endpoint's origin (it
        would otherwise receive this client's credential)."""
        url = self.endpoint.join(link)
        if (url.scheme, url.host, url.port) != (self.endpoint.scheme, self.endpoint.host, self.endpoint.port):
            raise UnexpectedResponse(f"refusing to follow a next-page link to another origin: {url.host}",
                                     status=response.status_code)
        # The client's api-version, not the link's: the answer must be in the version asked for.
        return Call("GET", str(url.copy_set_param("api-version", self.api_version)))

    def _pages(self, first: Call, parse: Callable[[httpx.Response, wire.Json, wire.Style], T]) -> Op[list[T]]:
        """All items of a list, following Azure's ``nextLink``."""
        found: list[T] = []
        call = first
        for _ in range(MAX_PAGES):
            response = yield call
            body, style = self._read(response)
            page, link = wire.items(response, wire.payload(response, body, style), style)
            found.extend(parse(response, item, style) for item in page)
            if link is None:
                return found
            call = self._next(response, link)
        raise UnexpectedResponse(f"more than {MAX_PAGES} pages; the server keeps sending next-page links")

    # -- services --------------------------------------------------------------------------------

    def create_or_update_service(self, ref: ServiceRef, body: dict[str, Any]) -> Op[Service]:
        response = yield self._call("PUT", service_path(ref), json=body)
        data, style = self._data(response)
        return wire.service(response, data, style, ref)

    def get_service(self, ref: ServiceRef) -> Op[Service]:
        response = yield self._call("GET", service_path(ref))
        data, style = self._data(response)
        return wire.service(response, data, style, ref)

    def list_services(self, subscription_id: str, resource_group: str) -> Op[list[Service]]:
        call = self._call("GET", provider_path(subscription_id, resource_group) + "/service")
        return (yield from self._pages(call, wire.service))

    def delete_service(self, ref: ServiceRef) -> Op[bool]:
        try:
            response = yield self._call("DELETE", service_path(ref))
        except NotFound as exc:
            # Seed answers 404 for nothing to delete; only trust it when it is one of our bodies.
            if exc.code in ("NOT_FOUND", "ResourceNotFound"):
                return False
            raise
        # Azure: 200 deleted, 202 accepted, 204 "the service does not exist".
        return response.status_code != 204

    # -- event subscriptions (the server's extension) ---------------------------------------------

    @staticmethod
    def _subscription(ref: ServiceRef) -> Callable[[httpx.Response, wire.Json, wire.Style], EventSubscription]:
        def parse(response: httpx.Response, data: wire.Json, style: wire.Style) -> EventSubscription:
            try:
                if style == "azure":
                    props = data["properties"]
                    return EventSubscription(ref, str(data["name"]),
                                             str(props["destination"]["properties"]["endpointUrl"]),
                                             tuple(props["eventTypes"]), str(props["eventDeliverySchema"]),
                                             bool(props["signed"]))
                return EventSubscription(ref, str(data["name"]), str(data["destination"]), tuple(data["event_types"]),
                                         str(data["schema"]), bool(data["signed"]))
            except (KeyError, TypeError) as exc:
                raise UnexpectedResponse(f"an event subscription without {exc}", status=response.status_code) \
                    from None
        return parse

    def put_event_subscription(self, ref: ServiceRef, name: str, destination: str, event_types: tuple[str, ...],
                               schema: str, secret: str | None) -> Op[EventSubscription]:
        body: dict[str, Any] = {"destination": destination, "eventTypes": list(event_types),
                                "eventDeliverySchema": schema}
        if secret is not None:
            body["secret"] = secret
        response = yield self._call("PUT", f"{service_path(ref)}/eventSubscriptions/{_seg(name)}",
                                    json={"properties": body})
        data, style = self._data(response)
        return self._subscription(ref)(response, data, style)

    def get_event_subscription(self, ref: ServiceRef, name: str) -> Op[EventSubscription]:
        response = yield self._call("GET", f"{service_path(ref)}/eventSubscriptions/{_seg(name)}")
        data, style = self._data(response)
        return self._subscription(ref)(response, data, style)

    def list_event_subscriptions(self, ref: ServiceRef) -> Op[list[EventSubscription]]:
        return (yield from self._pages(self._call("GET", service_path(ref) + "/eventSubscriptions"),
                                       self._subscription(ref)))

    def delete_event_subscription(self, ref: ServiceRef, name: str) -> Op[bool]:
        try:
            response = yield self._call("DELETE", f"{service_path(ref)}/eventSubscriptions/{_seg(name)}")
        except NotFound as exc:
            if exc.code in ("NOT_FOUND", "ResourceNotFound", "NotFound"):
                return False
            raise
        return response.status_code != 204

    # -- access configurations -------------------------------------------------------------------

    def list_access(self, ref: ServiceRef) -> Op[list[AccessConfiguration]]:
        return (yield from self._pages(self._call("GET", service_path(ref) + "/tenant"), wire.access))

    def get_access(self, target: AccessRef) -> Op[AccessConfiguration]:
        response = yield self._call("GET", access_path(target))
        data, style = self._data(response)
        return wire.access(response, data, style, response.headers.get("etag"))

    def get_etag(self, target: AccessRef) -> Op[str]:
        response = yield self._call("HEAD", access_path(target))
        etag = wire.unquote_etag(response.headers.get("etag"))
        if not etag:
            raise UnexpectedResponse("the HEAD answer has no ETag header", status=response.status_code)
        return etag

    def replace_access(self, target: AccessRef, properties: dict[str, Any], if_match: str) -> Op[AccessConfiguration]:
        response = yield self._call("PUT", access_path(target), json={"properties": properties},
                                    headers={"If-Match": wire.quote_etag(if_match)})
        data, style = self._data(response)
        return wire.access(response, data, style, response.headers.get("etag"))

    def update_access(self, target: AccessRef, enabled: bool, if_match: str) -> Op[AccessConfiguration]:
        response = yield self._call("PATCH", access_path(target), json={"properties": {"enabled": enabled}},
                                    headers={"If-Match": wire.quote_etag(if_match)})
        if response.status_code == 204:
            # api-versions before 2020-12-01 answer PATCH without a body; read what it became.
            return (yield from self.get_access(target))
        data, style = self._data(response)
        return wire.access(response, data, style, response.headers.get("etag"))

    def list_secrets(self, target: AccessRef) -> Op[Secrets]:
        response = yield self._call("POST", access_path(target) + "/listSecrets")
        data, style = self._data(response)
        return wire.secrets(response, data, style, target.access_name)

    def regenerate(self, target: AccessRef, slot: KeySlot, *, git: bool = False,
                   if_unused_for: str | None = None) -> Op[KeyVersion]:
        suffix = ("/git" if git else "") + ("/regeneratePrimaryKey" if slot == "primary" else "/regenerateSecondaryKey")
        call = self._call("POST", access_path(target) + suffix)
        if if_unused_for is not None:
            call.params["ifUnusedFor"] = if_unused_for
        response = yield call
        body, style = self._read(response)
        return wire.key_version(response, body, style, slot, "gitAccess" if git else target.access_name)

    def rotation_policy(self, target: AccessRef, method: str = "GET", document: Any = None) -> Op[Any]:
        """The policy document with its ``status`` (GET, PUT), or ``{"deleted": bool}`` (DELETE);
        ``None`` for a DELETE answered 204 (Azure style: there was none)."""
        response = yield self._call(method, access_path(target) + "/rotationPolicy", json=document)
        if response.status_code == 204:
            return {"deleted": False}
        body, style = self._read(response)
        if method == "DELETE" and style == "azure":
            return {"deleted": True}
        return wire.obj(response, wire.payload(response, body, style))

    def key_usage(self, target: AccessRef) -> Op[KeyUsage]:
        response = yield self._call("GET", access_path(target) + "/keyUsage")
        data, style = self._data(response)
        return wire.key_usage(response, data, style, target.access_name)

    # -- audit -----------------------------------------------------------------------------------

    def list_audit_events(
        self, ref: ServiceRef, *, operation: str | None, since: _dt.datetime | None, until: _dt.datetime | None,
        top: int | None, kind: str | None = None,
    ) -> Op[list[AuditEvent]]:
        """Every matching record, oldest first. Azure style pages by ``nextLink``; the seed envelope
        has none, so there the client advances ``$skip`` until a page comes back empty."""
        if top is not None and top < 1:
            raise ValueError("top must be at least 1")
        path = service_path(ref) + "/auditEvents"
        params = {"api-version": self.api_version}
        if operation is not None:
            params["operation"] = operation
        if kind is not None:
            params["kind"] = kind
        if since is not None:
            params["since"] = wire.rfc3339(since)
        if until is not None:
            params["until"] = wire.rfc3339(until)
        found: list[AuditEvent] = []
        call = Call("GET", path, dict(params, **({"$top": str(top)} if top else {})))
        previous_first: str | None = None
        for page_number in range(MAX_PAGES):
            try:
                response = yield call
            except NotFound as missing:
                if page_number:
                    raise
                # A server without the audit route answers 404 too; that is "no events" only if
                # the service itself exists.
                try:
                    yield self._call("GET", service_path(ref))
                except NotFound:
                    raise missing from None
                return []
            body, style = self._read(response)
            page, link = wire.items(response, wire.payload(response, body, style), style)
            events = [wire.audit_event(response, item, style) for item in page]
            found.extend(events)
            if top is not None and len(found) >= top:
                return found[:top]
            if style == "azure" or link is not None:
                if link is None:
                    return found
                call = self._next(response, link)
                continue
            if not events:
                return found
            if events[0].id is not None and events[0].id == previous_first:
                raise UnexpectedResponse("the server ignores $skip on auditEvents; stopping rather than looping")
            previous_first = events[0].id
            paging = {"$skip": str(len(found))}
            if top is not None:
                paging["$top"] = str(top - len(found))
            call = Call("GET", path, dict(params, **paging))
        raise UnexpectedResponse(f"more than {MAX_PAGES} pages of audit records")

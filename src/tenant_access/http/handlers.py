"""One function per operation: parse and check the request, call the use case, tag the result.

The table at the bottom is the single list of everything the server serves; the OpenAPI
documents and the authorization tests are generated from it, so a route cannot exist unlisted.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable
from typing import TypeVar, cast

from tenant_access.clock import parse_duration
from tenant_access.domain import idempotency, rules
from tenant_access.domain.audit import AUDIT_KINDS, AuditKind, AuditQuery
from tenant_access.domain.errors import Problems
from tenant_access.domain.models import AccessName, KeySlot, ServiceRef
from tenant_access.domain.rotation import MAX_WINDOW
from tenant_access.http import arm, events
from tenant_access.http.context import Context, Outcome
from tenant_access.http.routing import Route

PROVIDER = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ApiManagement"
SERVICE = PROVIDER + "/service/{serviceName}"
ACCESS = SERVICE + "/tenant/{accessName}"
EVENT_SUBSCRIPTION = SERVICE + "/eventSubscriptions/{eventSubscriptionName}"


def _service_ref(ctx: Context) -> ServiceRef:
    p = ctx.params
    return ServiceRef(p["subscriptionId"], p["resourceGroupName"], p["serviceName"])


def _access_target(ctx: Context) -> tuple[ServiceRef, AccessName]:
    return _service_ref(ctx), AccessName(ctx.params["accessName"])


T = TypeVar("T")


class Page(list[T]):
    """One page of a list answer. It is a plain list to wire formats that only show items (the
    seed envelope), and carries what an Azure-style answer needs for ``count`` and ``nextLink``."""

    def __init__(self, items: Iterable[T], *, total: int, skip: int, top: int | None) -> None:
        super().__init__(items)
        self.total = total
        self.skip = skip
        self.top = top

    @property
    def next_skip(self) -> int | None:
        """Where the next page starts, or None when this page reaches the end."""
        end = self.skip + len(self)
        return end if self.top is not None and end < self.total else None


def _paging(ctx: Context) -> tuple[int, int | None]:
    """``$skip`` and ``$top``, checked together so one answer names both when both are wrong."""
    problems = Problems()
    values: dict[str, int | None] = {}
    for name, minimum in (("$top", 1), ("$skip", 0)):
        raw = ctx.request.query(name)
        values[name] = None
        if raw is None:
            continue
        text = raw.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) < minimum:
            problems.add(f"query.{name}", f"must be an integer of at least {minimum}")
        else:
            values[name] = int(text)
    problems.raise_if_any("The paging parameters are not valid.")
    return values["$skip"] or 0, values["$top"]


def _page(items: list[T], skip: int, top: int | None) -> Page[T]:
    end = None if top is None else skip + top
    return Page(items[skip:end], total=len(items), skip=skip, top=top)


async def put_service(ctx: Context) -> Outcome:
    problems = Problems()
    ref = _service_ref(ctx)
    spec = rules.parse_service_spec(await ctx.request.json(required=True), problems)
    problems.raise_if_any()
    assert spec is not None
    plan = await ctx.app.put_service(ctx.actor, ref, spec)
    return Outcome("service", plan.service, created=plan.created)


async def get_service(ctx: Context) -> Outcome:
    ref = _service_ref(ctx)
    return Outcome("service", await ctx.app.get_service(ref))


async def delete_service(ctx: Context) -> Outcome:
    ref = _service_ref(ctx)
    return Outcome("service_deleted", (ref, await ctx.app.delete_service(ctx.actor, ref)))


async def list_services(ctx: Context) -> Outcome:
    skip, top = _paging(ctx)
    found = await ctx.app.list_services(ctx.params["subscriptionId"], ctx.params["resourceGroupName"])
    return Outcome("service_list", _page(found, skip, top))


async def list_services_by_subscription(ctx: Context) -> Outcome:
    """``ApiManagementService_List``: the services of a subscription that the caller's scope reaches
    (a principal of one resource group sees that group's), paged like the resource group's list."""
    skip, top = _paging(ctx)
    found = await ctx.app.list_subscription_services(ctx.params["subscriptionId"], ctx.actor.scope)
    return Outcome("service_list", _page(found, skip, top))


async def list_access(ctx: Context) -> Outcome:
    ref = _service_ref(ctx)
    ctx.request.query("$filter")  # "Not used" in the specification: accepted (once) and ignored
    skip, top = _paging(ctx)
    return Outcome("access_list", _page(await ctx.app.list_access(ref), skip, top))


async def get_access(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    return Outcome("access", await ctx.app.get_access(ref, name))


async def head_access(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    return Outcome("access_etag", await ctx.app.get_access(ref, name))


async def put_access(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    problems = Problems()
    fields = rules.parse_access_create(await ctx.request.json(required=True), problems)
    problems.raise_if_any()
    config = await ctx.app.replace_access(ctx.actor, ref, name, ctx.request.headers.get("if-match"), fields)
    return Outcome("access", config)


async def patch_access(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    problems = Problems()
    fields = rules.parse_access_update(await ctx.request.json(required=True), problems)
    problems.raise_if_any()
    config = await ctx.app.update_access(ctx.actor, ref, name, ctx.request.headers.get("if-match"), fields,
                                         status=ctx.status_of("access"))
    return Outcome("access", config)


async def list_secrets(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    await ctx.request.json(required=False)
    return Outcome("secrets", await ctx.app.list_secrets(ctx.actor, ref, name))


async def _regenerate(ctx: Context, name: AccessName | None, slot: KeySlot) -> Outcome:
    ref, path_name = _access_target(ctx)
    key = idempotency.parse_header(ctx.request.header_values("idempotency-key"))
    await ctx.request.json(required=False)  # no body is expected; a malformed one is still refused
    rotation = await ctx.app.regenerate_key(ctx.actor, ctx.operation, ref, name or path_name, slot, key,
                                            status=ctx.status_of("rotation"), if_unused_for=_if_unused_for(ctx))
    if rotation.replayed:
        return Outcome("rotation", rotation, headers=((idempotency.REPLAYED_HEADER, "true"),))
    return Outcome("rotation", rotation)


def _if_unused_for(ctx: Context) -> _dt.timedelta | None:
    """``?ifUnusedFor=PT15M`` (or the ``If-Unused-For`` header): opt-in, so the regenerate
    operations keep their exact contract without it. Uses are kept to the minute, so even ``PT0S``
    refuses a key used in the current minute."""
    raw = ctx.request.query("ifUnusedFor")
    where = "query.ifUnusedFor"
    if raw is None:
        raw = ctx.request.headers.get("if-unused-for")
        where = "header.If-Unused-For"
    if raw is None:
        return None
    problems = Problems()
    try:
        window = parse_duration(raw)
        if window > MAX_WINDOW:
            raise ValueError("must be at most 50 years")
    except ValueError as exc:
        problems.add(where, f"an ISO 8601 duration such as PT15M: {exc}")
    problems.raise_if_any("ifUnusedFor is not valid.")
    return window


async def regenerate_primary_key(ctx: Context) -> Outcome:
    return await _regenerate(ctx, None, KeySlot.PRIMARY)


async def regenerate_secondary_key(ctx: Context) -> Outcome:
    return await _regenerate(ctx, None, KeySlot.SECONDARY)


async def git_regenerate_primary_key(ctx: Context) -> Outcome:
    return await _regenerate(ctx, AccessName.GIT, KeySlot.PRIMARY)


async def git_regenerate_secondary_key(ctx: Context) -> Outcome:
    return await _regenerate(ctx, AccessName.GIT, KeySlot.SECONDARY)


async def key_usage(ctx: Context) -> Outcome:
    """Our extension: when each of the two keys was last used, and how often (issue 14)."""
    ref, name = _access_target(ctx)
    return Outcome("key_usage", await ctx.app.key_usage(ref, name))


async def get_rotation_policy(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    return Outcome("rotation_policy", await ctx.app.get_rotation_policy(ref, name))


async def put_rotation_policy(ctx: Context) -> Outcome:
    """Key Vault's policy shape plus gracePeriod (``domain/policy.py``); replaces any earlier one."""
    ref, name = _access_target(ctx)
    body = await ctx.request.json(required=True)
    return Outcome("rotation_policy", await ctx.app.put_rotation_policy(ctx.actor, ref, name, body))


async def delete_rotation_policy(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    return Outcome("rotation_policy_deleted", await ctx.app.delete_rotation_policy(ctx.actor, ref, name))


#: RFC 3339 ``date-time`` (what the OpenAPI documents promise): a time zone is required.
_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _time(ctx: Context, name: str, problems: Problems) -> _dt.datetime | None:
    raw = ctx.request.query(name)
    if raw is None:
        return None
    match = _RFC3339.fullmatch(raw)
    try:
        if match is None:
            raise ValueError(raw)
        date, minutes, seconds, fraction, zone = match.groups()
        seconds = "59" if seconds == "60" else seconds  # a leap second: RFC 3339 allows it, datetime does not
        fraction = (fraction or "")[:7]  # datetime takes at most microseconds
        return _dt.datetime.fromisoformat(f"{date}T{minutes}:{seconds}{fraction}{'+00:00' if zone in 'Zz' else zone}")
    except ValueError:
        problems.add(f"query.{name}", "must be an RFC 3339 time, e.g. 2026-01-01T00:00:00Z")
        return None


async def list_audit_events(ctx: Context) -> Outcome:
    """Our extension, not Azure's: the rotation history and secret reads of one service."""
    ref = _service_ref(ctx)
    problems = Problems()
    since, until = _time(ctx, "since", problems), _time(ctx, "until", problems)
    operation = ctx.request.query("operation")
    kind = ctx.request.query("kind")
    if kind is not None and kind not in AUDIT_KINDS:
        problems.add("query.kind", f"must be one of {', '.join(AUDIT_KINDS)}")
    problems.raise_if_any()
    skip, top = _paging(ctx)
    limit = min(top or AUDIT_PAGE, AUDIT_PAGE)
    events = await ctx.app.list_audit(AuditQuery(ref, operation, since, until, limit + 1, skip,
                                                 kind=cast("AuditKind | None", kind)))
    return Outcome("audit_list", Page(events[:limit], total=skip + len(events), skip=skip, top=limit))


AUDIT_PAGE = 1000

ROUTES: tuple[Route, ...] = (
    Route("services.list", "GET", PROVIDER + "/service", list_services,
          "List the services of a resource group"),
    Route("services.create_or_update", "PUT", SERVICE, put_service,
          "Create or update a service (creates both access configurations with fresh keys)",
          body="ServiceCreateOrUpdate"),
    Route("services.get", "GET", SERVICE, get_service, "Get a service"),
    Route("services.delete", "DELETE", SERVICE, delete_service, "Delete a service and all its keys"),
    Route("access.list", "GET", SERVICE + "/tenant", list_access, "List the access configurations of a service"),
    Route("access.get", "GET", ACCESS, get_access, "Get an access configuration (never its keys)"),
    Route("access.get_entity_tag", "HEAD", ACCESS, head_access, "Get the entity tag of an access configuration"),
    Route("access.create", "PUT", ACCESS, put_access,
          "Replace an access configuration (If-Match required)", body="AccessCreate"),
    Route("access.update", "PATCH", ACCESS, patch_access,
          "Enable or disable an access configuration (If-Match required)", body="AccessUpdate"),
    Route("access.list_secrets", "POST", ACCESS + "/listSecrets", list_secrets,
          "Return the primary and secondary keys"),
    Route("access.regenerate_primary_key", "POST", ACCESS + "/regeneratePrimaryKey", regenerate_primary_key,
          "Regenerate the primary key"),
    Route("access.regenerate_secondary_key", "POST", ACCESS + "/regenerateSecondaryKey", regenerate_secondary_key,
          "Regenerate the secondary key"),
    Route("access.git_regenerate_primary_key", "POST", ACCESS + "/git/regeneratePrimaryKey",
          git_regenerate_primary_key, "Regenerate the primary key of the gitAccess configuration"),
    Route("access.git_regenerate_secondary_key", "POST", ACCESS + "/git/regenerateSecondaryKey",
          git_regenerate_secondary_key, "Regenerate the secondary key of the gitAccess configuration"),
    Route("access.key_usage", "GET", ACCESS + "/keyUsage", key_usage,
          "When each key was last used to authenticate (to the minute) and how often (our extension)"),
    Route("access.rotation_policy.get", "GET", ACCESS + "/rotationPolicy", get_rotation_policy,
          "Get the rotation policy of an access configuration, with its scheduler state (our extension)"),
    Route("access.rotation_policy.put", "PUT", ACCESS + "/rotationPolicy", put_rotation_policy,
          "Set the rotation policy (Key Vault's lifetimeActions and expiryTime, plus gracePeriod; our extension)",
          body="RotationPolicy"),
    Route("access.rotation_policy.delete", "DELETE", ACCESS + "/rotationPolicy", delete_rotation_policy,
          "Remove the rotation policy: no more scheduled rotations, keys no longer expire (our extension)"),
    Route("audit.list", "GET", SERVICE + "/auditEvents", list_audit_events,
          "List the audit records of a service (filters: operation, kind (changes, reads, refusals), since, "
          "until; paging: $top, $skip)"),
    Route("events.subscriptions.list", "GET", SERVICE + "/eventSubscriptions", events.list_subscriptions,
          "List the event subscriptions of a service (our extension)"),
    Route("events.subscriptions.create_or_update", "PUT", EVENT_SUBSCRIPTION, events.put_subscription,
          "Create or replace an event subscription; its destination must pass the webhook handshake first",
          body="EventSubscriptionCreate"),
    Route("events.subscriptions.get", "GET", EVENT_SUBSCRIPTION, events.get_subscription,
          "Get an event subscription (never its secret)"),
    Route("events.subscriptions.delete", "DELETE", EVENT_SUBSCRIPTION, events.delete_subscription,
          "Delete an event subscription and its undelivered events"),
    Route("events.subscriptions.deliveries", "GET", EVENT_SUBSCRIPTION + "/deliveries", events.get_deliveries,
          "What an event subscription is owed: pending, retrying (next attempt), dead letters (reason), the oldest "
          "undelivered; and what this server delivered since it started (our extension)"),
)

#: Resource Manager's own operations that clients need before they reach a resource (the Azure CLI's
#: cloud registration and sign-in, ``az apim list`` without a group). Served in Azure mode only: the
#: seed format has no subscriptions, tenants or clouds, and its routes stay exactly as they were.
#: Their api-versions are Resource Manager's, not API Management's, so the handlers check them
#: (``versioned=False``); the subscription-level service list is API Management's and versioned.
AZURE_ROUTES: tuple[Route, ...] = (
    Route("metadata.endpoints", "GET", "/metadata/endpoints", arm.metadata_endpoints,
          "Cloud metadata: this server as resource manager and login endpoint (what az cloud register reads)",
          versioned=False, public=True),
    Route("metadata.endpoints_slash", "GET", "//metadata/endpoints", arm.metadata_endpoints,
          "The same, at the path clients ask for when the endpoint they were given ends in '/'",
          versioned=False, public=True),
    Route("subscriptions.list", "GET", "/subscriptions", arm.list_subscriptions,
          "List the subscriptions the caller's scope reaches (those holding services, and declared ones)",
          versioned=False),
    Route("subscriptions.get", "GET", "/subscriptions/{subscriptionId}", arm.get_subscription,
          "Get a subscription", versioned=False),
    Route("tenants.list", "GET", "/tenants", arm.list_tenants, "List the tenants (this server is one)",
          versioned=False),
    Route("resource_groups.get", "GET", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}",
          arm.get_resource_group, "Get a resource group (one exists while it holds a service)", versioned=False),
    Route("services.list_by_subscription", "GET", "/subscriptions/{subscriptionId}/providers/Microsoft.ApiManagement"
          "/service", list_services_by_subscription, "List the services of a subscription"),
)

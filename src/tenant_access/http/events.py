"""Event subscriptions of a service (our extension, both wire styles): PUT, GET, DELETE and list.

A PUT runs the destination's handshake (``handshake.py``) before anything is stored, so a
subscription that exists is one whose destination agreed to receive events. The secret is never
answered back: answers say whether one is set.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from tenant_access.domain import event_subscriptions
from tenant_access.domain.errors import NotFound
from tenant_access.domain.event_subscriptions import EventSubscription
from tenant_access.domain.keys import utcnow
from tenant_access.domain.models import ServiceRef
from tenant_access.http.context import Context, Outcome
from tenant_access.http.responses import Response, json_response

RESOURCE_TYPE = "Microsoft.ApiManagement/service/eventSubscriptions"


def _ref(ctx: Context) -> ServiceRef:
    p = ctx.params
    return ServiceRef(p["subscriptionId"], p["resourceGroupName"], p["serviceName"])


def _missing(ref: ServiceRef, name: str) -> NotFound:
    return NotFound(f"The event subscription '{name}' of service '{ref.name}' was not found.", target=name)


async def put_subscription(ctx: Context) -> Outcome:
    from tenant_access import handshake
    from tenant_access.delivery import DeliveryPolicy

    ref = _ref(ctx)
    name = ctx.params["eventSubscriptionName"]
    sub = event_subscriptions.parse(ref, name, await ctx.request.json(required=True), utcnow())
    await ctx.app.get_service(ref)  # 404 before contacting anyone
    policy = ctx.app.event_policy or DeliveryPolicy()
    await handshake.check(sub, ctx.public_url, timeout=policy.attempt_timeout,
                          allow_private=policy.allows_private(sub.destination))
    store = ctx.app.store
    created = await store.run_outbox(store.outbox.put_subscription(sub), write=True)
    stored = await store.run_outbox(store.outbox.get_subscription(ref, name))
    return Outcome("event_subscription", stored or sub, created=created)


async def get_subscription(ctx: Context) -> Outcome:
    ref = _ref(ctx)
    name = ctx.params["eventSubscriptionName"]
    event_subscriptions.check_name(name)
    found = await ctx.app.store.run_outbox(ctx.app.store.outbox.get_subscription(ref, name))
    if found is None:
        raise _missing(ref, name)
    return Outcome("event_subscription", found)


async def delete_subscription(ctx: Context) -> Outcome:
    ref = _ref(ctx)
    name = ctx.params["eventSubscriptionName"]
    event_subscriptions.check_name(name)
    deleted = await ctx.app.store.run_outbox(ctx.app.store.outbox.delete_subscription(ref, name), write=True)
    return Outcome("event_subscription_deleted", (ref, name, deleted))


async def list_subscriptions(ctx: Context) -> Outcome:
    ref = _ref(ctx)
    await ctx.app.get_service(ref)
    found = await ctx.app.store.run_outbox(ctx.app.store.outbox.list_subscriptions(ref))
    return Outcome("event_subscription_list", found)


def _time(value: _dt.datetime) -> str:
    return value.astimezone(_dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def seed_data(sub: EventSubscription) -> dict[str, Any]:
    data = sub.describe()
    data["created_at"] = _time(sub.created_at)
    return data


def azure_body(sub: EventSubscription) -> dict[str, Any]:
    return {"id": sub.resource_id, "name": sub.name, "type": RESOURCE_TYPE, "properties": {
        "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": sub.destination}},
        "eventTypes": list(sub.event_types), "eventDeliverySchema": sub.schema, "signed": sub.secret is not None,
        "createdAt": _time(sub.created_at)}}


def render(outcome: Outcome, style: str) -> Response:
    """Both wire styles' answers (called by ``wire_seed`` and ``wire_azure``)."""
    kind, value = outcome.kind, outcome.value
    if kind == "event_subscription_deleted":
        ref, name, deleted = value
        if style == "azure":
            return Response(200 if deleted else 204, content_type=None)
        if not deleted:
            raise _missing(ref, name)
        return json_response(200, {"success": True, "data": {"name": name, "deleted": True}})
    status = 201 if outcome.created else 200
    if kind == "event_subscription":
        if style == "azure":
            return json_response(status, azure_body(value))
        return json_response(status, {"success": True, "data": seed_data(value)})
    if kind == "event_subscription_list":
        if style == "azure":
            return json_response(200, {"value": [azure_body(s) for s in value]})
        return json_response(200, {"success": True, "data": [seed_data(s) for s in value]})
    raise AssertionError(f"no rendering for {kind}")

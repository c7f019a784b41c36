"""Event subscriptions of a service (our extension, both wire styles): PUT, GET, DELETE and list.

A PUT runs the destination's handshake (``handshake.py``) before anything is stored, so a
subscription that exists is one whose destination agreed to receive events. The secret is never
answered back: answers say whether one is set. A change is written with its audit record in one
transaction, flushed to disk before the answer, as every other change is.

``.../deliveries`` (read only) is what the console shows of a subscription: what the store still
owes it (retrying, dead letters with their reasons, the oldest undelivered) and what this process
delivered since it started. Redelivery of dead letters is the ``events redeliver`` command's.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenant_access.domain import event_subscriptions
from tenant_access.domain.audit import event as audit_event
from tenant_access.domain.errors import NotFound
from tenant_access.domain.event_subscriptions import EventSubscription
from tenant_access.domain.keys import utcnow
from tenant_access.domain.models import ServiceRef
from tenant_access.http.context import Context, Outcome
from tenant_access.http.responses import Response, json_response

if TYPE_CHECKING:
    from tenant_access.storage.outbox import DeliveryState, Undelivered

RESOURCE_TYPE = "Microsoft.ApiManagement/service/eventSubscriptions"
DELIVERIES_TYPE = RESOURCE_TYPE + "/deliveries"
#: The most retrying deliveries and dead letters one answer lists (the counts are always whole).
LISTED = 50


@dataclass(frozen=True, slots=True)
class Deliveries:
    subscription: EventSubscription
    state: DeliveryState
    #: Delivered by this process since it started; None where this process does not deliver.
    delivered: int | None
    now: _dt.datetime


def _detail(sub: EventSubscription) -> str:
    """What the audit record of a PUT says: the subscription in one line (never its secret, nor
    the query of its destination, which may hold a credential)."""
    types = ", ".join(t.removeprefix("Microsoft.ApiManagement.TenantAccess.") for t in sub.event_types) or "all"
    return (f"destination={event_subscriptions.destination_for_audit(sub.destination)}; eventTypes={types}; "
            f"schema={sub.schema}; signed={'yes' if sub.secret is not None else 'no'}")


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
    record = audit_event(ctx.actor, ctx.operation, sub.resource_id, service=ref, at=sub.created_at,
                         detail=_detail(sub))
    created = await store.run_outbox(store.outbox.put_subscription(sub, record), write=True, durable=True)
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
    record = audit_event(ctx.actor, ctx.operation, f"{ref.resource_id}/eventSubscriptions/{name}", service=ref,
                         at=utcnow())
    store = ctx.app.store
    deleted = await store.run_outbox(store.outbox.delete_subscription(ref, name, record), write=True, durable=True)
    return Outcome("event_subscription_deleted", (ref, name, deleted))


async def get_deliveries(ctx: Context) -> Outcome:
    ref = _ref(ctx)
    name = ctx.params["eventSubscriptionName"]
    event_subscriptions.check_name(name)
    store = ctx.app.store
    found = await store.run_outbox(store.outbox.get_subscription(ref, name))
    if found is None:
        raise _missing(ref, name)
    state = await store.run_outbox(store.outbox.deliveries(found, LISTED))
    counter = ctx.app.delivered
    return Outcome("event_subscription_deliveries",
                   Deliveries(found, state, None if counter is None else counter(found.key), utcnow()))


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
        "metricsLabel": sub.metrics_label, "createdAt": _time(sub.created_at)}}


def _undelivered(item: Undelivered, dead: bool, camel: bool) -> dict[str, Any]:
    names = ("eventId", "eventType", "attempts", "firstAttemptAt", "nextAttemptAt", "reason", "lastError") if camel \
        else ("event_id", "event_type", "attempts", "first_attempt_at", "next_attempt_at", "reason", "last_error")
    data: dict[str, Any] = {names[0]: item.event_id, names[1]: item.event_type, names[2]: item.attempts,
                            names[3]: _time(item.first_at)}
    if dead:
        data[names[5]] = item.error
    else:
        data[names[4]] = _time(item.next_at)
        data[names[6]] = item.error
    return data


def deliveries_data(found: Deliveries, camel: bool = False) -> dict[str, Any]:
    """Both styles' fields (``camel``: Azure's spelling) of a subscription's deliveries."""
    state, oldest = found.state, found.state.oldest_pending
    age = None if oldest is None else round(max((found.now - oldest).total_seconds(), 0.0), 3)
    # By event id: ``--all`` would queue the dead letters of every subscription, not only these.
    command = "tenant-access events redeliver " + " ".join(u.event_id for u in state.dead_letters)
    fields = {
        "metrics_label": found.subscription.metrics_label, "delivered": found.delivered,
        "pending": state.pending, "retrying": state.retrying, "dead_lettered": state.dead,
        "oldest_undelivered_at": None if oldest is None else _time(oldest), "oldest_undelivered_age_seconds": age,
        "retries": [_undelivered(u, False, camel) for u in state.retries],
        "dead_letters": [_undelivered(u, True, camel) for u in state.dead_letters],
        "redeliver_command": command if state.dead else None, "as_of": _time(found.now),
    }
    if not camel:
        return {"name": found.subscription.name, **fields}
    return {_camel(k): v for k, v in fields.items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


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
    if kind == "event_subscription_deliveries":
        if style == "azure":
            sub = value.subscription
            return json_response(200, {"id": sub.resource_id + "/deliveries", "name": sub.name,
                                       "type": DELIVERIES_TYPE, "properties": deliveries_data(value, camel=True)})
        return json_response(200, {"success": True, "data": deliveries_data(value)})
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

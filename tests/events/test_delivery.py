"""The delivery worker against a real receiver on loopback and a real store (both backends): a
signed delivery, the retry schedule on a moved clock, dead-lettering and redelivery, Retry-After,
and a slow destination that does not hold up another."""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import time
from collections.abc import Callable
from typing import Any

from tenant_access import events_net
from tenant_access.delivery import Deliverer, DeliveryPolicy
from tenant_access.domain import events
from tenant_access.domain.event_subscriptions import EventSubscription
from tenant_access.domain.models import AccessName, KeySlot, ServiceRef, ServiceSpec
from tenant_access.service import TenantAccess
from tenant_access.storage.base import Store
from tests.events.conftest import ACTOR, Clock
from tests.events.receiver import Behaviour, Receiver

REF = ServiceRef("11111111-2222-3333-4444-555555555555", "rg1", "events1")
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _service(app: TenantAccess, url: str, *, secret: str | None = SECRET, name: str = "hook",
                   schema: str = events.SCHEMA_CLOUDEVENTS) -> EventSubscription:
    await app.put_service(ACTOR, REF, ServiceSpec("westeurope", "Developer", 1, "a@example.com", "A"))
    sub = EventSubscription(REF, name, url, (events.KEY_REGENERATED,), schema, secret, _dt.datetime.now(_dt.UTC))
    await app.store.run_outbox(app.store.outbox.put_subscription(sub), write=True)
    return sub


async def _rotate(app: TenantAccess) -> str:
    rotation = await app.regenerate_key(ACTOR, "access.regenerate_secondary_key", REF, AccessName.ACCESS,
                                        KeySlot.SECONDARY)
    return rotation.version.id


async def _rounds(deliverer: Deliverer, count: int = 3) -> None:
    for _ in range(count):
        await deliverer.run_once()
        await deliverer.drain()


#: The scenario's deliverers, stopped when it ends (each holds an HTTP connection pool).
_STARTED: list[Deliverer] = []


def _deliverer(*args: Any) -> Deliverer:
    deliverer = Deliverer(*args)
    _STARTED.append(deliverer)
    return deliverer


def _run(open_store: Callable[[], Store], scenario: Callable[[TenantAccess], object]) -> None:
    async def main() -> None:
        store = open_store()
        await store.open()
        try:
            await scenario(TenantAccess(store))  # type: ignore[misc]
        finally:
            while _STARTED:
                await _STARTED.pop().stop()
            await store.close()

    asyncio.run(main())


def test_deliveries_are_signed_in_order_and_carry_stable_ids(open_store: Callable[[], Store]) -> None:
    async def scenario(app: TenantAccess) -> None:
        with Receiver() as receiver:
            await _service(app, receiver.url)
            versions = [await _rotate(app) for _ in range(5)]
            deliverer = _deliverer(app.store, DeliveryPolicy(allow_private=True))
            await _rounds(deliverer, 8)
            posts = receiver.posts()
            sent = [json.loads(p.body) for p in posts]
            assert [s["data"]["newVersionId"] for s in sent] == versions  # only the subscribed type, in order
            for post in posts:
                assert post.headers["content-type"] == "application/cloudevents+json"
                assert post.headers["webhook-id"] == json.loads(post.body)["id"]
                assert post.headers["webhook-signature"] == events_net.signature(
                    SECRET, post.headers["webhook-id"], int(post.headers["webhook-timestamp"]), post.body)
            assert await app.store.run_outbox(app.store.outbox.undelivered()) == (0, 0, 0)

    _run(open_store, scenario)


def test_always_500_is_dead_lettered_after_the_retry_window_then_redelivered(
        open_store: Callable[[], Store]) -> None:
    async def scenario(app: TenantAccess) -> None:
        with Receiver(Behaviour(status=500)) as receiver:
            await _service(app, receiver.url)
            version = await _rotate(app)
            clock = Clock()
            clock.now = _dt.datetime.now(_dt.UTC)
            policy = DeliveryPolicy(allow_private=True, retry_window=3600, backoff_base=60, backoff_max=900)
            deliverer = _deliverer(app.store, policy, clock)
            attempts = 0
            for _ in range(40):
                await _rounds(deliverer, 1)
                attempts = len(receiver.posts())
                if await app.store.run_outbox(app.store.outbox.dead_letters()):
                    break
                clock.move(900)
            dead = await app.store.run_outbox(app.store.outbox.dead_letters())
            assert len(dead) == 1
            assert dead[0].event.data["newVersionId"] == version
            assert "retry window of 3600s exhausted" in dead[0].reason
            assert "HTTP 500" in dead[0].reason
            assert 3 <= attempts <= 12  # backoff, not one attempt per round
            ids = {p.headers["webhook-id"] for p in receiver.posts()}
            assert ids == {dead[0].event.id}  # every retry carried the same id
            await _rounds(deliverer, 2)
            assert len(receiver.posts()) == attempts  # dead letters are not retried

            receiver.behaviour.status = 200
            assert await app.store.run_outbox(app.store.outbox.redeliver(None, clock()), write=True) == 1
            await _rounds(deliverer, 2)
            assert len(receiver.posts()) == attempts + 1
            assert receiver.posts()[-1].headers["webhook-id"] == dead[0].event.id
            assert await app.store.run_outbox(app.store.outbox.undelivered()) == (0, 0, 0)

    _run(open_store, scenario)


def test_retry_after_is_honoured_and_429_retried(open_store: Callable[[], Store]) -> None:
    async def scenario(app: TenantAccess) -> None:
        with Receiver(Behaviour(status=429, retry_after="120")) as receiver:
            await _service(app, receiver.url)
            await _rotate(app)
            clock = Clock()
            clock.now = _dt.datetime.now(_dt.UTC)
            deliverer = _deliverer(app.store, DeliveryPolicy(allow_private=True, backoff_base=1), clock)
            await _rounds(deliverer)
            assert len(receiver.posts()) == 1
            clock.move(100)
            receiver.behaviour.status = 200
            await _rounds(deliverer)
            assert len(receiver.posts()) == 1  # 120 s not yet passed, though the backoff's 1 s has
            clock.move(30)
            await _rounds(deliverer)
            assert len(receiver.posts()) == 2
            assert await app.store.run_outbox(app.store.outbox.undelivered()) == (0, 0, 0)

    _run(open_store, scenario)


def test_a_redirect_is_not_followed(open_store: Callable[[], Store]) -> None:
    async def scenario(app: TenantAccess) -> None:
        with Receiver() as target, Receiver(Behaviour(location=None)) as receiver:
            receiver.behaviour.location = target.url
            await _service(app, receiver.url)
            await _rotate(app)
            deliverer = _deliverer(app.store, DeliveryPolicy(allow_private=True))
            await _rounds(deliverer)
            assert len(receiver.posts()) == 1
            assert target.posts() == []
            assert await app.store.run_outbox(app.store.outbox.undelivered()) == (0, 1, 0)

    _run(open_store, scenario)


def test_a_slow_destination_does_not_delay_another(open_store: Callable[[], Store]) -> None:
    async def scenario(app: TenantAccess) -> None:
        import socket

        silent = socket.socket()  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        try:
            with Receiver() as fast:
                await _service(app, f"http://127.0.0.1:{silent.getsockname()[1]}/slow", name="slow")
                await _service(app, fast.url, name="fast")
                await _rotate(app)
                deliverer = _deliverer(app.store, DeliveryPolicy(allow_private=True, attempt_timeout=5))
                began = time.monotonic()
                await deliverer.run_once()
                while not fast.posts() and time.monotonic() - began < 4:
                    await asyncio.sleep(0.02)
                assert len(fast.posts()) == 1
                assert time.monotonic() - began < 4  # generous: the slow one holds its attempt for 5 s
                await deliverer.stop()
        finally:
            silent.close()

    _run(open_store, scenario)

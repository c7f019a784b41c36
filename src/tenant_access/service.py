"""The use cases: what each API operation does, independent of how it arrived.

The HTTP layer calls these with parsed, validated arguments and the authenticated :class:`Actor`,
and turns the results (or the :mod:`~tenant_access.domain.errors` they raise) into responses in
the active wire format. Every change and every read of a secret is audited here, inside the same
transaction as the change itself.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenant_access.clock import Clock, format_duration, iso
from tenant_access.domain import access, events, policy, rotation, services, subscriptions
from tenant_access.domain.audit import Actor, AuditEvent, AuditQuery, event
from tenant_access.domain.errors import NotFound
from tenant_access.domain.idempotency import (
    IdempotencyClaim,
    IdempotentOutcome,
    IdempotentReplay,
    check_replay,
    principal_key,
)
from tenant_access.domain.models import (
    AccessChange,
    AccessConfig,
    AccessName,
    KeySlot,
    KeyVersion,
    Rotation,
    Secrets,
    Service,
    ServiceRef,
    ServiceSpec,
)
from tenant_access.domain.services import ServicePlan
from tenant_access.domain.subscriptions import Subscription
from tenant_access.domain.usage import KeyUsage, SlotUsage
from tenant_access.security.authorization import covers, reaches
from tenant_access.storage.base import Store
from tenant_access.storage.policies import PolicyRecord
from tenant_access.usage import FLUSH_SECONDS, UsageRecorder


class _ChangedMeanwhile(Exception):
    """The key a policy meant to regenerate was replaced between the usage check and the lock."""


#: Who policy-driven rotations are by, in the audit trail.
POLICY_ACTOR = Actor("policy", "owner", "/", "policy", "scheduler", "scheduler")

if TYPE_CHECKING:
    from tenant_access.delivery import DeliveryPolicy


def _service_missing(ref: ServiceRef) -> NotFound:
    return NotFound(
        f"The Resource 'Microsoft.ApiManagement/service/{ref.name}' under resource group "
        f"'{ref.resource_group}' was not found.",
        target=ref.name,
    )


def _policy_detail(parsed: policy.RotationPolicy) -> str:
    """What the audit record of a policy change says: the policy in one line."""
    document = parsed.document()
    actions = ", ".join(f"{a.action} {a.trigger}={format_duration(a.after)}" for a in parsed.actions) or "no actions"
    return f"{actions}; expiryTime={document['attributes']['expiryTime']}; gracePeriod={document['gracePeriod']}"


def _target(ref: ServiceRef, name: AccessName | None = None) -> str:
    return ref.resource_id + (f"/tenant/{name.value}" if name else "")


def _events(actor: Actor, current: Secrets, change: AccessChange) -> tuple[events.Event, ...]:
    """What a change announces: each replaced key (regenerated, or supplied by a PUT: holders must
    move either way), then a flip of ``enabled``. ``actor`` ``policy`` is a rotation policy's."""
    config = current.config
    found = [events.key_regenerated(config.service, config.name, v.slot, config.version_id(v.slot), v.id,
                                    actor.principal, change.updated_at) for v in change.new_versions]
    found.extend(events.access_changes(config, change.enabled, actor.principal, change.updated_at))
    return tuple(found)


@dataclass
class TenantAccess:
    store: Store
    #: "Now" for every change: the emulator can move it (see :mod:`tenant_access.clock`).
    clock: Clock = dataclasses.field(default_factory=Clock)
    #: Key usage counted by this process and not yet written (None: only what is stored).
    usage: UsageRecorder | None = None
    #: Event delivery settings (subscription handshakes use its timeout and safety rule); the
    #: server sets them from its flags.
    event_policy: DeliveryPolicy | None = None
    #: Deliveries this process made since it started, by subscription key (what the console's
    #: "delivered" shows); None where this process does not deliver events.
    delivered: Callable[[str], int] | None = None

    # -- services --------------------------------------------------------------------------------

    async def put_service(self, actor: Actor, ref: ServiceRef, spec: ServiceSpec) -> ServicePlan:
        now = self.clock.now()

        def decide(existing: Service | None) -> ServicePlan:
            plan = services.plan(existing, ref, spec, now)
            record = event(actor, "services.create_or_update", _target(ref), service=ref, at=now,
                           status=201 if plan.created else 200, detail="created" if plan.created else "updated")
            born = (events.service_created(ref, actor.principal, now),) if plan.created else ()
            return dataclasses.replace(plan, audit=record, events=born)

        return await self.store.put_service(ref, decide)

    async def get_service(self, ref: ServiceRef) -> Service:
        found = await self.store.get_service(ref)
        if found is None:
            raise _service_missing(ref)
        return found

    async def list_services(self, subscription_id: str, resource_group: str) -> list[Service]:
        return await self.store.list_services(subscription_id, resource_group)

    async def list_subscription_services(self, subscription_id: str, scope: str) -> list[Service]:
        """The services of a subscription within ``scope`` (a caller of one resource group sees
        that group's), by group and name."""
        wanted = subscription_id.lower()
        found = [s for s in await self.store.list_all_services()
                 if s.ref.subscription_id.lower() == wanted and covers(scope, s.ref.resource_id)]
        return sorted(found, key=lambda s: (s.ref.resource_group.lower(), s.ref.name.lower()))

    async def list_subscriptions(self, scope: str = "/") -> list[Subscription]:
        """Those holding a service and those declared (``tenant-access subscriptions add``), as far
        as ``scope`` reaches: a principal of a resource group sees that group's subscription."""
        every = subscriptions.gather(await self.store.list_all_services(), await self.store.list_subscriptions())
        return [s for s in every if reaches(scope, s.resource_id)]

    async def declare_subscription(self, subscription: Subscription) -> None:
        await self.store.put_subscription(subscription)

    async def delete_service(self, actor: Actor, ref: ServiceRef) -> Service | None:
        now = self.clock.now()
        return await self.store.delete_service(ref, event(actor, "services.delete", _target(ref), service=ref, at=now),
                                               (events.service_deleted(ref, actor.principal, now),))

    # -- access configurations -------------------------------------------------------------------

    async def list_access(self, ref: ServiceRef) -> list[AccessConfig]:
        found = await self.store.list_access(ref)
        if found is None:
            raise _service_missing(ref)
        return found

    async def get_access(self, ref: ServiceRef, name: AccessName) -> AccessConfig:
        found = await self.store.get_access(ref, name)
        if found is None:
            raise _service_missing(ref)
        return found

    async def list_secrets(self, actor: Actor, ref: ServiceRef, name: AccessName) -> Secrets:
        """Keys leave the store only after the read is on record: no audit, no keys."""
        found = await self.store.read_secrets(ref, name, event(actor, "access.list_secrets", _target(ref, name),
                                                                service=ref))
        if found is None:
            raise _service_missing(ref)
        return found  # with the keys' expiry under a rotation policy, read with them

    async def replace_access(
        self, actor: Actor, ref: ServiceRef, name: AccessName, if_match: str | None, fields: dict[str, object]
    ) -> AccessConfig:
        now = self.clock.now()
        return await self._modify(actor, "access.create", ref, name,
                                  lambda current: access.replace(current, if_match, fields, now))

    async def update_access(
        self, actor: Actor, ref: ServiceRef, name: AccessName, if_match: str | None, fields: dict[str, object],
        *, status: int = 200,
    ) -> AccessConfig:
        """``status`` is what the client will be answered, for the audit record (204 for an older
        api-version's PATCH in Azure mode)."""
        now = self.clock.now()
        return await self._modify(actor, "access.update", ref, name,
                                  lambda current: access.update(current, if_match, fields, now), status=status)

    async def regenerate_key(
        self, actor: Actor, operation: str, ref: ServiceRef, name: AccessName, slot: KeySlot,
        idempotency_key: str | None = None, *, status: int = 200, if_unused_for: _dt.timedelta | None = None,
    ) -> Rotation:
        """The seed operation (with ``slot=SECONDARY``) and its three siblings.

        With ``idempotency_key``, a retry of a request that already rotated (the key is the
        caller's, remembered for :data:`~tenant_access.domain.idempotency.TTL`) answers the first
        request's outcome, marked ``replayed``, and rotates nothing. ``status`` is what the wire
        format answers a rotation with (200 in the seed format, 204 in Azure's): the audit record
        must say what the client received.
        """
        now = self.clock.now()
        outcome: list[tuple[str, AccessChange]] = []
        # ?ifUnusedFor=: usage read first, checked against the locked state (domain/rotation.py).
        usage = await self.key_usage(ref, name) if if_unused_for is not None else None

        def decide(current: Secrets) -> AccessChange:
            if usage is not None and if_unused_for is not None:
                rotation.check_unused(current, slot, usage, if_unused_for, now)
            change = access.regenerate(current, slot, now)
            outcome.append((current.config.version_id(slot), change))
            return change

        claim = None
        if idempotency_key is not None:
            claim = IdempotencyClaim(principal_key(actor), idempotency_key, operation,
                                     _target(ref, name).lower(), now)
        try:
            config = await self._modify(actor, operation, ref, name, decide, idempotency=claim, status=status)
        except IdempotentReplay as replay:
            assert claim is not None
            return await self._replayed(ref, name, check_replay(claim, replay))
        previous_version_id, change = outcome[-1]
        return Rotation(change.new_versions[0], previous_version_id, config)

    async def _replayed(self, ref: ServiceRef, name: AccessName, stored: IdempotentOutcome) -> Rotation:
        """The stored outcome as a rotation: the same version and entity tag the first answer had
        (the configuration's names come from its current state; no key material is involved)."""
        config = await self.get_access(ref, name)
        version = KeyVersion(stored.version_id, config.service, config.name, stored.slot, "",
                             stored.version_created_at, "regenerated")
        return Rotation(version, stored.previous_version_id, dataclasses.replace(config, etag=stored.etag),
                        replayed=True)

    async def _modify(
        self, actor: Actor, operation: str, ref: ServiceRef, name: AccessName,
        decide: Callable[[Secrets], AccessChange], *, idempotency: IdempotencyClaim | None = None,
        status: int = 200,
    ) -> AccessConfig:
        def audited(current: Secrets) -> AccessChange:
            change = decide(current)
            new_ids = {v.slot: v.id for v in change.new_versions}
            slots = sorted(new_ids, key=lambda slot: slot.value)
            record = event(
                actor, operation, _target(ref, name), service=ref, at=change.updated_at,
                old_version_id=",".join(current.config.version_id(s) for s in slots) or None,
                new_version_id=",".join(new_ids[s] for s in slots) or None,
                detail=",".join(s.value for s in slots) or None, status=status,
            )
            return dataclasses.replace(change, audit=record, events=lambda: _events(actor, current, change))

        try:
            if idempotency is None:
                return await self.store.modify_access(ref, name, audited)
            return await self.store.modify_access(ref, name, audited, idempotency=idempotency)
        except NotFound:
            raise _service_missing(ref) from None

    # -- key lifecycle (issue 14) ----------------------------------------------------------------

    async def key_usage(self, ref: ServiceRef, name: AccessName) -> KeyUsage:
        """Both current key versions with their use: what the store holds from every replica, plus
        this process's counts that are not written yet."""
        config = await self.get_access(ref, name)
        ids = [config.primary_version_id, config.secondary_version_id]
        found = (await self.usage.usage(ids) if self.usage is not None
                 else await self.store.get_key_usage(ids))
        expiry = await self.expiries(ref, name)
        keys = []
        for slot, vid, created in ((KeySlot.PRIMARY, ids[0], config.primary_created_at),
                                   (KeySlot.SECONDARY, ids[1], config.secondary_created_at)):
            used = found.get(vid)
            keys.append(SlotUsage(slot, vid, created, used.last_used if used else None, used.uses if used else 0,
                                  created + expiry if expiry is not None else None))
        return KeyUsage(config, (keys[0], keys[1]), self.clock.now(),
                        self.usage.every if self.usage is not None else FLUSH_SECONDS)

    async def expiries(self, ref: ServiceRef, name: AccessName) -> _dt.timedelta | None:
        """How long the keys of this configuration live (its policy's expiryTime); None: forever."""
        found = await self.store.get_rotation_policy(ref, name)
        return policy.load(found.document).expiry if found is not None else None

    async def get_rotation_policy(self, ref: ServiceRef, name: AccessName) -> policy.PolicyView:
        config = await self.get_access(ref, name)
        found = await self.store.get_rotation_policy(ref, name)
        if found is None:
            raise NotFound(f"The access configuration '{name.value}' has no rotation policy.", target="rotationPolicy")
        return self._policy_view(config, found)

    async def put_rotation_policy(self, actor: Actor, ref: ServiceRef, name: AccessName,
                                  body: object) -> policy.PolicyView:
        policy.check_applies_to(name)
        parsed = policy.parse(body)
        config = await self.get_access(ref, name)
        now = self.clock.now()
        record = event(actor, "access.rotation_policy.put", _target(ref, name) + "/rotationPolicy", service=ref,
                       at=now, detail=_policy_detail(parsed))
        stored = await self.store.put_rotation_policy(ref, name, parsed.document(), now, record)
        if stored is None:
            raise _service_missing(ref)
        return self._policy_view(config, stored)

    async def delete_rotation_policy(self, actor: Actor, ref: ServiceRef, name: AccessName) -> bool:
        await self.get_access(ref, name)
        record = event(actor, "access.rotation_policy.delete", _target(ref, name) + "/rotationPolicy", service=ref,
                       at=self.clock.now())
        return await self.store.delete_rotation_policy(ref, name, record)

    async def run_policy(self, found: PolicyRecord, now: _dt.datetime) -> str | None:
        """One scheduler look at one policy: rotate the standby key if a rotation is due, or record
        (once per episode) why it cannot; ``None`` when nothing was due.

        Exactly once per due time across replicas and crashes: the rotation goes through the
        ordinary change path with an idempotency key made of the due time, which the store checks
        and stores in the rotation's own transaction. A replica that loses the race gets the
        stored outcome and writes nothing; a crash before the commit leaves the due time due, one
        after it moves the next due time on (it is counted from the newest key).
        """
        ref, name = found.service, found.access_name
        rules = policy.load(found.document)
        config = await self.store.get_access(ref, name)
        due = policy.rotation_due(rules, config) if config is not None else None
        if due is None or due > now:
            return None
        usage = await self.key_usage(ref, name)
        decision = policy.decide(rules, usage, now)
        if decision.slot is None:
            assert decision.blocked is not None
            if found.blocked_since is None:
                record = event(POLICY_ACTOR, "access.rotation_blocked", _target(ref, name), service=ref, at=now,
                               outcome="failed", status=409, detail=decision.blocked)
                await self.store.set_policy_outcome(ref, name, now, decision.blocked, now, record)
            return decision.blocked
        slot = decision.slot
        operation = f"access.regenerate_{slot.value}_key"
        # Keys are scoped to a principal, not to a configuration: the key names both (hashed, to fit).
        target = _target(ref, name).lower()
        key = "policy:" + hashlib.sha256(f"{target}\n{iso(due)}".encode()).hexdigest()
        claim = IdempotencyClaim(principal_key(POLICY_ACTOR), key, "policy.rotate", target, now)

        outcome = f"rotated the {slot.value} key (due {iso(due)})"

        def decide(current: Secrets) -> AccessChange:
            if current.config.version_id(slot) != usage.slot(slot).version_id:
                raise _ChangedMeanwhile  # another replica (or a person) rotated it: look again next pass
            # The policy's outcome commits with the rotation: no crash can leave it stale.
            return dataclasses.replace(access.regenerate(current, slot, now), policy_outcome=(now, outcome))

        try:
            await self._modify(POLICY_ACTOR, operation, ref, name, decide, idempotency=claim)
        except (IdempotentReplay, _ChangedMeanwhile):
            return "skipped: rotated by another replica, or changed meanwhile"
        return outcome

    def _policy_view(self, config: AccessConfig, found: PolicyRecord) -> policy.PolicyView:
        return policy.PolicyView(config, policy.load(found.document), found.created_at, found.updated_at,
                                 found.last_run_at, found.last_outcome, found.blocked_since, self.clock.now())

    # -- audit -----------------------------------------------------------------------------------

    async def record(self, record: AuditEvent) -> None:
        """Refusals and sign-in failures: committed, not flushed (a flood of bad credentials must
        not cost a disk flush each)."""
        await self.store.record(record, durable=False)

    async def list_audit(self, query: AuditQuery) -> list[AuditEvent]:
        """Records outlive services: a deleted service's trail stays readable."""
        return await self.store.list_audit(query)

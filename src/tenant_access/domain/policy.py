"""Rotation policies: Key Vault's shape, plus what two alternating keys add (issue 14).

A policy document, as ``PUT .../tenant/{accessName}/rotationPolicy`` takes it::

    {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P90D"}, "action": {"type": "Rotate"}},
                         {"trigger": {"timeBeforeExpiry": "P10D"}, "action": {"type": "Notify"}}],
     "attributes": {"expiryTime": "P120D"},
     "gracePeriod": "PT15M"}

What two keys change from Key Vault's one: a ``Rotate`` action regenerates the *standby* key, the
slot with no accepted use within ``gracePeriod``, never a key in use. Rotations are due one period
after the newest key was made (``timeAfterCreate``, or ``expiryTime - timeBeforeExpiry``), so the
keys alternate: clients move to the newest key, and the next rotation regenerates the one they
left. When no key can be regenerated safely, the policy is *blocked*:

* both keys were used within the grace period (``both keys in use``);
* the only unused key is the newest one, and the older one is still in use: its clients never
  moved, and regenerating the fresh key again would rotate nothing that matters.

Blocked rotations are recorded (once per episode) and shown, never forced.

With ``attributes.expiryTime``, each key version expires that long after it was made; a shared
access signature of an expired key is refused. Without it keys never expire.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from tenant_access.clock import format_duration, iso, parse_duration
from tenant_access.domain.errors import FieldError, ValidationFailed
from tenant_access.domain.models import AccessConfig, AccessName, KeySlot
from tenant_access.domain.usage import KeyUsage

ACTIONS = ("Rotate", "Notify")
TRIGGERS = ("timeAfterCreate", "timeBeforeExpiry")
DEFAULT_GRACE = _dt.timedelta(minutes=15)
#: Shorter periods are a typo (or a test that should move the clock instead).
MIN_PERIOD = _dt.timedelta(minutes=1)
_TOP = {"lifetimeActions", "attributes", "gracePeriod", "id"}


@dataclass(frozen=True, slots=True)
class LifetimeAction:
    action: str  # "Rotate" or "Notify"
    trigger: str  # "timeAfterCreate" or "timeBeforeExpiry"
    after: _dt.timedelta  # the trigger's duration

    def describe(self) -> dict[str, Any]:
        return {"trigger": {self.trigger: format_duration(self.after)}, "action": {"type": self.action}}


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    actions: tuple[LifetimeAction, ...]
    expiry: _dt.timedelta | None
    grace: _dt.timedelta

    def action(self, name: str) -> LifetimeAction | None:
        return next((a for a in self.actions if a.action == name), None)

    def period(self, name: str = "Rotate") -> _dt.timedelta | None:
        """How long after a key is made the action is due (``timeBeforeExpiry`` counted back from expiry)."""
        found = self.action(name)
        if found is None:
            return None
        if found.trigger == "timeAfterCreate":
            return found.after
        assert self.expiry is not None
        return self.expiry - found.after

    def expires_at(self, created_at: _dt.datetime) -> _dt.datetime | None:
        return None if self.expiry is None else created_at + self.expiry

    def document(self) -> dict[str, Any]:
        """The canonical document: what GET answers and what is stored."""
        return {
            "lifetimeActions": [a.describe() for a in self.actions],
            "attributes": {"expiryTime": format_duration(self.expiry) if self.expiry else None},
            "gracePeriod": format_duration(self.grace),
        }


class _Parser:
    """Collects every problem of one document, so one answer names them all."""

    def __init__(self) -> None:
        self.problems: list[FieldError] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(FieldError(where, message))

    def duration(self, value: Any, where: str) -> _dt.timedelta | None:
        try:
            found = parse_duration(value)
        except ValueError as exc:
            self.problem(where, f"an ISO 8601 duration such as P90D: {exc}")
            return None
        if found < MIN_PERIOD:
            self.problem(where, "must be at least PT1M")
            return None
        return found

    def expiry(self, attributes: Any) -> _dt.timedelta | None:
        if not isinstance(attributes, dict):
            self.problem("body.attributes", "must be an object")
            return None
        for key in sorted(set(attributes) - {"expiryTime", "created", "updated"}):
            self.problem(f"body.attributes.{key}", "unknown field; only expiryTime may be set")
        if attributes.get("expiryTime") is None:
            return None
        return self.duration(attributes["expiryTime"], "body.attributes.expiryTime")

    def actions(self, raw: Any, expiry: _dt.timedelta | None) -> list[LifetimeAction]:
        if not isinstance(raw, list):
            self.problem("body.lifetimeActions", "must be a list")
            return []
        actions: list[LifetimeAction] = []
        for index, item in enumerate(raw):
            found = self.action(item, f"body.lifetimeActions[{index}]", expiry, actions)
            if found is not None:
                actions.append(found)
        return actions

    def action(self, item: Any, where: str, expiry: _dt.timedelta | None,
               earlier: list[LifetimeAction]) -> LifetimeAction | None:
        trigger = item.get("trigger") if isinstance(item, dict) else None
        action = item.get("action") if isinstance(item, dict) else None
        kind = action.get("type") if isinstance(action, dict) else None
        if not isinstance(kind, str) or kind.capitalize() not in ACTIONS:
            self.problem(f"{where}.action.type", "must be Rotate or Notify")
            return None
        kind = kind.capitalize()
        if any(a.action == kind for a in earlier):
            self.problem(f"{where}.action.type", f"a policy has at most one {kind} action")
            return None
        if not isinstance(trigger, dict) or len([t for t in TRIGGERS if trigger.get(t) is not None]) != 1:
            self.problem(f"{where}.trigger", "needs exactly one of timeAfterCreate or timeBeforeExpiry")
            return None
        name = next(t for t in TRIGGERS if trigger.get(t) is not None)
        after = self.duration(trigger[name], f"{where}.trigger.{name}")
        if after is None:
            return None
        if name == "timeBeforeExpiry":
            if expiry is None:
                self.problem(f"{where}.trigger.timeBeforeExpiry", "needs attributes.expiryTime")
                return None
            if after >= expiry:
                self.problem(f"{where}.trigger.timeBeforeExpiry", "must be shorter than attributes.expiryTime")
                return None
        return LifetimeAction(kind, name, after)


def check_applies_to(name: AccessName) -> None:
    """Policies act on use: "regenerate the key nobody uses" needs to know who uses which key. This
    server sees the ``access`` keys used (they sign the SharedAccessSignature tokens it checks), but
    never the ``gitAccess`` keys, which git clients present to the API Management service itself: a
    policy there would take both keys for unused and rotate them under their clients."""
    if name is not AccessName.ACCESS:
        raise ValidationFailed(
            "Rotation policies apply to the 'access' configuration only: this server cannot see the "
            "'gitAccess' keys in use, so it could not tell which one is safe to regenerate.",
            details=[FieldError("path.accessName", "must be 'access' for a rotation policy")],
            target="accessName",
        )


def parse(body: Any) -> RotationPolicy:
    """A policy from a request body, every problem named at once (:class:`ValidationFailed`)."""
    if isinstance(body, dict) and isinstance(body.get("properties"), dict) and "lifetimeActions" not in body:
        body = body["properties"]  # Resource Manager's envelope is accepted too
    if not isinstance(body, dict):
        raise ValidationFailed("A rotation policy is a JSON object (lifetimeActions, attributes, gracePeriod).",
                               details=[FieldError("body", "must be an object")])
    parser = _Parser()
    for key in sorted(set(body) - _TOP):
        parser.problem(f"body.{key}", "unknown field; a policy has lifetimeActions, attributes and gracePeriod")
    expiry = parser.expiry(body.get("attributes") or {})
    grace = DEFAULT_GRACE
    if body.get("gracePeriod") is not None:
        grace = parser.duration(body["gracePeriod"], "body.gracePeriod") or DEFAULT_GRACE
    policy = RotationPolicy(tuple(parser.actions(body.get("lifetimeActions", []), expiry)), expiry, grace)
    rotate = policy.period() if not parser.problems else None
    if rotate is not None and expiry is not None and rotate + grace >= expiry:
        parser.problem("body.attributes.expiryTime", "must be longer than the rotation period plus gracePeriod "
                       f"({format_duration(rotate + grace)}): clients need time to move before the key they "
                       "leave expires")
    if parser.problems:
        raise ValidationFailed("The rotation policy is not valid.", details=parser.problems)
    return policy


def load(document: dict[str, Any]) -> RotationPolicy:
    """A stored document (already valid)."""
    return parse(document)


# -- decisions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """What a due Rotate action does: regenerate ``slot``, or nothing (``blocked`` says why)."""

    slot: KeySlot | None
    blocked: str | None = None


def newest_created(config: AccessConfig) -> _dt.datetime:
    return max(config.primary_created_at, config.secondary_created_at)


def rotation_due(policy: RotationPolicy, config: AccessConfig) -> _dt.datetime | None:
    """When the next rotation is due: one period after the newest key was made. A server that was
    down for several periods finds one due time in the past, so it rotates once, not once per
    period missed."""
    period = policy.period()
    return None if period is None else newest_created(config) + period


def notify_due(policy: RotationPolicy, config: AccessConfig) -> _dt.datetime | None:
    period = policy.period("Notify")
    return None if period is None else newest_created(config) + period


def decide(policy: RotationPolicy, usage: KeyUsage, now: _dt.datetime) -> Decision:
    """Which key a due rotation regenerates (see the module's docstring for the rules)."""
    keys = {k.slot: k for k in usage.keys}
    in_use = {slot for slot, k in keys.items() if k.used_within(policy.grace, now)}
    if len(in_use) == 2:
        since = min(k.last_used for k in keys.values() if k.last_used is not None)
        return Decision(None, f"rotation blocked: both keys in use since {iso(since)}")
    unused = [slot for slot in (KeySlot.PRIMARY, KeySlot.SECONDARY) if slot not in in_use]
    if len(unused) == 2:  # nobody uses either: the older goes
        p, s = keys[KeySlot.PRIMARY], keys[KeySlot.SECONDARY]
        return Decision(KeySlot.SECONDARY if s.created_at < p.created_at else KeySlot.PRIMARY)
    standby, active = keys[unused[0]], keys[unused[0].other]
    if standby.created_at > active.created_at:
        assert active.last_used is not None
        return Decision(None, f"rotation blocked: clients still use the {active.slot.value} key (last used "
                              f"{iso(active.last_used)}) and have not moved to the {standby.slot.value} key made "
                              f"{iso(standby.created_at)}")
    return Decision(standby.slot)


@dataclass(frozen=True, slots=True)
class PolicyView:
    """A policy as GET shows it: Key Vault's document plus the scheduler's state for this
    configuration (next due times, last outcome, whether rotation is blocked)."""

    config: AccessConfig
    policy: RotationPolicy
    created_at: _dt.datetime
    updated_at: _dt.datetime
    last_run_at: _dt.datetime | None
    last_outcome: str | None
    blocked_since: _dt.datetime | None
    now: _dt.datetime

    def describe(self) -> dict[str, Any]:
        document = self.policy.document()
        document["id"] = self.config.resource_id + "/rotationPolicy"
        document["attributes"].update({"created": iso(self.created_at), "updated": iso(self.updated_at)})
        due = rotation_due(self.policy, self.config)
        notify = notify_due(self.policy, self.config)
        document["status"] = {
            "nextRotation": iso(due) if due else None,
            "nextNotify": iso(notify) if notify else None,
            "overdue": due is not None and due <= self.now,
            "lastRunAt": iso(self.last_run_at) if self.last_run_at else None,
            "lastOutcome": self.last_outcome,
            "blockedSince": iso(self.blocked_since) if self.blocked_since else None,
        }
        return document

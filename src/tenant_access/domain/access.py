"""The decisions about access configurations: the one place where keys are regenerated.

Each function takes the current state and returns what must change, or raises. None of them
touches storage: the store runs them inside its transaction (so the state they see is locked) and
persists what they return. That keeps every rule readable here, and every write atomic there.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from tenant_access.domain import keys
from tenant_access.domain.errors import FieldError, PreconditionFailed, ValidationFailed
from tenant_access.domain.models import (
    AccessChange,
    AccessConfig,
    AccessName,
    KeySlot,
    KeyVersion,
    Secrets,
    ServiceRef,
)


def initial_keys(service: ServiceRef, name: AccessName, now: _dt.datetime) -> tuple[KeyVersion, KeyVersion]:
    """Both keys of a configuration that is being created with its service."""
    return (
        _version(service, name, KeySlot.PRIMARY, keys.new_key(), now, "created"),
        _version(service, name, KeySlot.SECONDARY, keys.new_key(), now, "created"),
    )


def regenerate(current: Secrets, slot: KeySlot, now: _dt.datetime) -> AccessChange:
    """Replace one key with fresh random material. The other key is untouched, so clients that
    use it keep working: that is what makes a zero-downtime rotation possible."""
    config = current.config
    version = _version(config.service, config.name, slot, keys.new_key(), now, "regenerated")
    return AccessChange(
        principal_id=config.principal_id,
        enabled=config.enabled,
        etag=keys.new_etag(),
        updated_at=now,
        new_versions=(version,),
    )


def applied(current: Secrets, change: AccessChange) -> Secrets:
    """The state ``change`` leaves: what a store holds once it has persisted it (so a store that
    knows what it wrote need not read it back)."""
    config = current.config
    keys_by_slot = {KeySlot.PRIMARY: (config.primary_version_id, config.primary_created_at, current.primary_key),
                    KeySlot.SECONDARY: (config.secondary_version_id, config.secondary_created_at,
                                        current.secondary_key)}
    for version in change.new_versions:
        keys_by_slot[version.slot] = (version.id, version.created_at, version.secret)
    (p_id, p_at, p_key), (s_id, s_at, s_key) = keys_by_slot[KeySlot.PRIMARY], keys_by_slot[KeySlot.SECONDARY]
    return Secrets(
        AccessConfig(config.service, config.name, change.principal_id, change.enabled, change.etag,
                     config.created_at, change.updated_at, p_id, p_at, s_id, s_at),
        p_key, s_key,
    )


def check_if_match(if_match: str | None, current_etag: str) -> None:
    """Optimistic concurrency as the specification has it: required, ``*`` matches anything,
    otherwise one of the listed tags must equal the current one (quoted or not, weak or strong)."""
    if if_match is None or not if_match.strip():
        raise ValidationFailed(
            "The If-Match header is required: send the ETag from a GET, or * to update unconditionally.",
            details=[FieldError("header.If-Match", "required")],
            target="If-Match",
        )
    candidates = [_unquote(tag) for tag in if_match.split(",")]
    if "*" in candidates:
        return
    if not any(keys.same_secret(tag, current_etag) for tag in candidates):
        raise PreconditionFailed(
            "The If-Match header does not match the current entity tag; read the configuration again.",
            target="If-Match",
        )


def replace(current: Secrets, if_match: str | None, fields: dict[str, Any], now: _dt.datetime) -> AccessChange:
    """PUT: set principalId, enabled and caller-chosen keys. Fields left out keep their value:
    a PUT that silently generated new keys would be an unannounced rotation."""
    check_if_match(if_match, current.config.etag)
    config = current.config
    new_versions = []
    for slot, field in ((KeySlot.PRIMARY, "primary_key"), (KeySlot.SECONDARY, "secondary_key")):
        if field in fields:
            held = current.primary_key if slot is KeySlot.PRIMARY else current.secondary_key
            if not keys.same_secret(fields[field], held):
                new_versions.append(_version(config.service, config.name, slot, fields[field], now, "supplied"))
    principal_id = fields.get("principal_id", config.principal_id)
    enabled = fields.get("enabled", config.enabled)
    return _change(current, principal_id, enabled, tuple(new_versions), now)


def update(current: Secrets, if_match: str | None, fields: dict[str, Any], now: _dt.datetime) -> AccessChange:
    """PATCH: only ``enabled`` may change."""
    check_if_match(if_match, current.config.etag)
    return _change(current, current.config.principal_id, fields.get("enabled", current.config.enabled), (), now)


def _change(
    current: Secrets, principal_id: str, enabled: bool, new_versions: tuple[KeyVersion, ...], now: _dt.datetime
) -> AccessChange:
    """The entity tag changes when something changed, and only then."""
    config = current.config
    changed = bool(new_versions) or principal_id != config.principal_id or enabled != config.enabled
    return AccessChange(
        principal_id=principal_id,
        enabled=enabled,
        etag=keys.new_etag() if changed else config.etag,
        updated_at=now if changed else config.updated_at,
        new_versions=new_versions,
    )


def _version(
    service: ServiceRef, name: AccessName, slot: KeySlot, secret: str, now: _dt.datetime, origin: str
) -> KeyVersion:
    return KeyVersion(keys.new_version_id(), service, name, slot, secret, now, origin)


def _unquote(tag: str) -> str:
    tag = tag.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    if len(tag) >= 2 and tag[0] == tag[-1] == '"':
        tag = tag[1:-1]
    return tag

"""Seed documents: the services a test rig should have, provisioned idempotently, and the state dump.

One format serves three doors: ``tenant-access serve --seed FILE`` (at start, as the system),
``POST /_emulator/seed`` and ``tenant-access emulator seed FILE`` (as the calling owner), and the
``seed=`` option of the pytest fixture. ``GET /_emulator/state`` answers in the same format, so a
revealed dump fed back to ``/_emulator/seed`` after a reset rebuilds the same services and keys.

Everything goes through the use cases, so seeding is audited and validated exactly like API calls.
Re-applying a document is safe: missing services are created, existing ones get the document's
properties (sku, publisher, tags, and the access configurations' ``enabled``/``principal_id``) when
they differ, and their keys are never touched: fixed keys apply only to services the document
creates, because silently resetting a key a test just rotated would hide the very bug under test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenant_access.domain import policy, rules
from tenant_access.domain.audit import Actor
from tenant_access.domain.errors import Problems, ValidationFailed
from tenant_access.domain.models import AccessName, ServiceRef, ServiceSpec
from tenant_access.domain.subscriptions import Subscription
from tenant_access.service import TenantAccess

#: The caller seeding at start-up is the server itself; the audit trail says so.
SYSTEM = Actor("tenant-access", "owner", "/", "system", "seed", "local")

FORMAT_VERSION = 1
MASK = "***"
DEFAULT_LOCATION = "westeurope"
DEFAULT_SKU = "Developer"
DEFAULT_PUBLISHER_EMAIL = "admin@example.com"
DEFAULT_PUBLISHER_NAME = "tenant-access"

_TOP_FIELDS = {"version", "subscription", "resource_group", "services", "subscriptions"}
_SUBSCRIPTION_FIELDS = {"id", "name"}
_SERVICE_FIELDS = {"subscription", "resource_group", "name", "location", "sku", "publisher_email",
                   "publisher_name", "tags", "access", "git_access"}
_ACCESS_FIELDS = {"enabled", "principal_id", "primary_key", "secondary_key", "rotation_policy"}
#: What a state dump adds; accepted and ignored, so a dump is a valid seed document.
_TOP_READ_ONLY = {"faults"}
_SERVICE_READ_ONLY = {"id", "etag", "created_at", "updated_at"}
_ACCESS_READ_ONLY = {"etag", "primary_key_version_id", "secondary_key_version_id", "updated_at", "rotation_status"}
_ACCESS_KEYS = {AccessName.ACCESS: "access", AccessName.GIT: "git_access"}

#: Field names of the shared request rules, as the seed format spells them.
_RULE_FIELDS = {
    "path.subscriptionId": "subscription", "path.resourceGroupName": "resource_group", "path.serviceName": "name",
    "body.location": "location", "body.sku": "sku", "body.sku.name": "sku.name", "body.sku.capacity": "sku.capacity",
    "body.properties.publisherEmail": "publisher_email", "body.properties.publisherName": "publisher_name",
    "body.tags": "tags",
}
_RULE_ACCESS_FIELDS = {
    "body.properties.principalId": "principal_id", "body.properties.enabled": "enabled",
    "body.properties.primaryKey": "primary_key", "body.properties.secondaryKey": "secondary_key",
}


@dataclass(frozen=True, slots=True)
class SeedService:
    """One checked service of a seed document; ``access`` holds the fields given per configuration
    (``principal_id``, ``enabled``, ``primary_key``, ``secondary_key``)."""

    ref: ServiceRef
    spec: ServiceSpec
    access: dict[AccessName, dict[str, Any]] = field(default_factory=dict)
    #: Rotation policies (Key Vault's shape plus gracePeriod), by configuration; set on every apply.
    policies: dict[AccessName, dict[str, Any]] = field(default_factory=dict)


class SeedServices(list[SeedService]):
    """The services of a checked document (a plain list to callers), and the subscriptions it
    declares (``subscriptions: [{id, name}]``: what Resource Manager clients list in Azure mode)."""

    def __init__(self, services: list[SeedService], subscriptions: list[Subscription]) -> None:
        super().__init__(services)
        self.subscriptions = subscriptions


@dataclass(frozen=True, slots=True)
class SeedResult:
    ref: ServiceRef
    result: str  # "created", "updated" or "unchanged"

    def as_dict(self) -> dict[str, str]:
        return {"id": self.ref.resource_id, "subscription": self.ref.subscription_id,
                "resource_group": self.ref.resource_group, "name": self.ref.name, "result": self.result}


class SeedError(ValueError):
    """A seed document that cannot be applied; ``problems`` names every field at fault."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        self.problems = problems or []
        text = message + "".join(f"\n  {where}: {what}" for where, what in self.problems)
        super().__init__(text)

    def as_validation(self) -> ValidationFailed:
        from tenant_access.domain.errors import FieldError

        return ValidationFailed("The seed document is not valid.",
                                details=[FieldError(f"body.{where}", what) for where, what in self.problems])


# -- reading -------------------------------------------------------------------------------------


def load_file(path: Path) -> Any:
    """The document in ``path``: JSON when it ends in ``.json``, YAML (a superset of JSON) otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedError(f"cannot read the seed file {path}: {exc}") from None
    return loads(text, json_only=path.suffix.lower() == ".json", source=str(path))


def loads(text: str, *, json_only: bool = False, source: str = "the seed document") -> Any:
    if json_only:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise SeedError(f"{source} is not valid JSON: {exc}") from None
    import yaml  # only here: the server does not pay for PyYAML unless a seed file is given

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SeedError(f"{source} is not valid YAML: {exc}") from None


def parse(document: Any) -> list[SeedService]:
    """Check a whole document before anything is applied, naming every bad field at once."""
    problems: list[tuple[str, str]] = []
    if not isinstance(document, Mapping):
        raise SeedError("a seed document is a mapping with a 'services' list", [("(document)", "must be a mapping")])
    _unknown(document, _TOP_FIELDS, "", problems, _TOP_READ_ONLY)
    version = document.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        problems.append(("version", f"must be {FORMAT_VERSION}"))
    entries = document.get("services")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        problems.append(("services", "must be a list"))
        entries = []
    defaults = {k: document.get(k) for k in ("subscription", "resource_group")}
    found: list[SeedService] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, entry in enumerate(entries):
        where = f"services[{index}]"
        service = _service(entry, defaults, where, problems)
        if service is None:
            continue
        if service.ref.key in seen:
            problems.append((f"{where}.name", f"the same service as services[{seen[service.ref.key]}]"))
            continue
        seen[service.ref.key] = index
        found.append(service)
    declared = _subscriptions(document.get("subscriptions"), problems)
    if problems:
        raise SeedError("the seed document is not valid:", problems)
    return SeedServices(found, declared)


def _subscriptions(entries: Any, problems: list[tuple[str, str]]) -> list[Subscription]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        problems.append(("subscriptions", "must be a list"))
        return []
    found = []
    for index, entry in enumerate(entries):
        where = f"subscriptions[{index}]"
        if not isinstance(entry, Mapping):
            problems.append((where, "must be a mapping with 'id' and 'name'"))
            continue
        _unknown(entry, _SUBSCRIPTION_FIELDS, f"{where}.", problems)
        sub_id, name = entry.get("id"), entry.get("name")
        if not isinstance(sub_id, str) or not rules.is_guid(sub_id):
            problems.append((f"{where}.id", "must be a GUID"))
        if not isinstance(name, str) or not name.strip() or len(name) > 256 or not name.isprintable():
            problems.append((f"{where}.name", "must be 1 to 256 printable characters"))
        if isinstance(sub_id, str) and isinstance(name, str):
            found.append(Subscription(sub_id, name.strip()))
    return found


def _unknown(obj: Mapping[Any, Any], allowed: set[str], where: str, problems: list[tuple[str, str]],
             ignored: frozenset[str] | set[str] = frozenset()) -> None:
    for key in obj:
        if key not in allowed and key not in ignored:
            problems.append((f"{where}{key}", "unknown field"))


def _text(entry: Mapping[str, Any], key: str, default: Any, where: str, problems: list[tuple[str, str]]) -> Any:
    value = entry.get(key, default)
    if value is None:
        problems.append((where + key, "required"))
    elif not isinstance(value, str):
        problems.append((where + key, "must be a string"))
        return None
    return value


def _service(entry: Any, defaults: dict[str, Any], where: str, problems: list[tuple[str, str]]) -> SeedService | None:
    if not isinstance(entry, Mapping):
        problems.append((where, "must be a mapping"))
        return None
    before = len(problems)
    prefix = where + "."
    _unknown(entry, _SERVICE_FIELDS, prefix, problems, _SERVICE_READ_ONLY)
    subscription = _text(entry, "subscription", defaults["subscription"], prefix, problems)
    resource_group = _text(entry, "resource_group", defaults["resource_group"], prefix, problems)
    name = _text(entry, "name", None, prefix, problems)
    sku = entry.get("sku", DEFAULT_SKU)
    if isinstance(sku, Mapping):
        _unknown(sku, {"name", "capacity"}, prefix + "sku.", problems)
        sku_body: Any = {"name": sku.get("name"), "capacity": sku.get("capacity", 1)}
    else:
        sku_body = {"name": sku, "capacity": 1}
    body = {
        "location": entry.get("location", DEFAULT_LOCATION),
        "sku": sku_body,
        "properties": {"publisherEmail": entry.get("publisher_email", DEFAULT_PUBLISHER_EMAIL),
                       "publisherName": entry.get("publisher_name", DEFAULT_PUBLISHER_NAME)},
        "tags": entry.get("tags"),
    }
    found = Problems()
    params = {k: v for k, v in (("subscriptionId", subscription), ("resourceGroupName", resource_group),
                                ("serviceName", name)) if isinstance(v, str)}
    rules.check_path_params(params, found)
    spec = rules.parse_service_spec(body, found)
    problems.extend((prefix + _rename(item.field, _RULE_FIELDS), item.message) for item in found.items)
    access: dict[AccessName, dict[str, Any]] = {}
    policies: dict[AccessName, dict[str, Any]] = {}
    for access_name, key in _ACCESS_KEYS.items():
        raw = entry.get(key)
        if raw is None:
            continue
        if not isinstance(raw, Mapping):
            problems.append((prefix + key, "must be a mapping"))
            continue
        _unknown(raw, _ACCESS_FIELDS, f"{prefix}{key}.", problems, _ACCESS_READ_ONLY)
        properties = {
            wire: raw[seed] for wire, seed in (("principalId", "principal_id"), ("enabled", "enabled"),
                                               ("primaryKey", "primary_key"), ("secondaryKey", "secondary_key"))
            if seed in raw and raw[seed] != MASK  # a masked dump's placeholder means "whatever the key is"
        }
        if raw.get("rotation_policy") is not None:
            try:
                policies[access_name] = policy.parse(raw["rotation_policy"]).document()
            except ValidationFailed as exc:
                problems.extend((f"{prefix}{key}.rotation_policy{item.field.removeprefix('body')}", item.message)
                                for item in exc.details)
        checked = Problems()
        fields = rules.parse_access_create({"properties": properties}, checked)
        problems.extend((f"{prefix}{key}.{_rename(item.field, _RULE_ACCESS_FIELDS)}", item.message)
                        for item in checked.items)
        if fields:
            access[access_name] = fields
    if len(problems) > before or spec is None:
        return None
    return SeedService(ServiceRef(subscription, resource_group, name), spec, access, policies)


def _rename(rule_field: str, names: dict[str, str]) -> str:
    if rule_field in names:
        return names[rule_field]
    if rule_field.startswith("body.tags."):
        return "tags." + rule_field.removeprefix("body.tags.")
    return rule_field


# -- applying ------------------------------------------------------------------------------------


async def apply(app: TenantAccess, actor: Actor, services: list[SeedService]) -> list[SeedResult]:
    """Provision ``services`` in order; a failure stops there (what was applied stays applied, and
    applying the document again after fixing it finishes the job)."""
    for declared in getattr(services, "subscriptions", ()):
        await app.declare_subscription(declared)
    results = []
    for item in services:
        results.append(SeedResult(item.ref, await _apply_one(app, actor, item)))
    return results


async def _apply_one(app: TenantAccess, actor: Actor, item: SeedService) -> str:
    existing = await app.store.get_service(item.ref)
    if existing is None:
        await app.put_service(actor, item.ref, item.spec)
        for name, fields in item.access.items():
            await app.replace_access(actor, item.ref, name, "*", fields)
        await _apply_policies(app, actor, item)
        return "created"
    changed = await _apply_policies(app, actor, item)
    spec = item.spec
    if (existing.sku_name, existing.sku_capacity, existing.publisher_email, existing.publisher_name,
            existing.tags) != (spec.sku_name, spec.sku_capacity, spec.publisher_email, spec.publisher_name, spec.tags) \
            or existing.location.replace(" ", "").lower() != spec.location.replace(" ", "").lower():
        await app.put_service(actor, item.ref, spec)  # a location change raises Conflict, as over the API
        changed = True
    for name, fields in item.access.items():
        properties = {k: v for k, v in fields.items() if k in ("principal_id", "enabled")}
        if not properties:
            continue
        current = await app.get_access(item.ref, name)
        if any(getattr(current, k) != v for k, v in properties.items()):
            await app.replace_access(actor, item.ref, name, "*", properties)
            changed = True
    return "updated" if changed else "unchanged"


async def _apply_policies(app: TenantAccess, actor: Actor, item: SeedService) -> bool:
    """Set each declared policy unless the stored one is the same (re-applying changes nothing)."""
    changed = False
    for name, document in item.policies.items():
        stored = await app.store.get_rotation_policy(item.ref, name)
        if stored is None or stored.document != document:
            await app.put_rotation_policy(actor, item.ref, name, document)
            changed = True
    return changed


# -- the state dump ------------------------------------------------------------------------------


async def dump(app: TenantAccess, actor: Actor, *, reveal: bool) -> dict[str, Any]:
    """Every service as a seed document, with the read-only fields a test may want to assert on.

    Keys are masked unless ``reveal``; revealed keys are read through ``listSecrets``, so each read
    is on the audit trail under the caller's name like any other.
    """
    from tenant_access.http.wire_seed import rfc3339

    services = []
    policies = {(r.service.key, r.access_name) for r in await app.store.list_rotation_policies()}
    for svc in await app.store.list_all_services():
        entry: dict[str, Any] = {
            "subscription": svc.ref.subscription_id, "resource_group": svc.ref.resource_group, "name": svc.ref.name,
            "location": svc.location, "sku": {"name": svc.sku_name, "capacity": svc.sku_capacity},
            "publisher_email": svc.publisher_email, "publisher_name": svc.publisher_name, "tags": svc.tags,
            "id": svc.ref.resource_id, "etag": svc.etag,
            "created_at": rfc3339(svc.created_at), "updated_at": rfc3339(svc.updated_at),
        }
        for config in await app.list_access(svc.ref):
            keys = {"primary_key": MASK, "secondary_key": MASK}
            if reveal:
                secrets = await app.list_secrets(actor, svc.ref, config.name)
                keys = {"primary_key": secrets.primary_key, "secondary_key": secrets.secondary_key}
            entry[_ACCESS_KEYS[config.name]] = {
                "enabled": config.enabled, "principal_id": config.principal_id, **keys,
                "etag": config.etag, "primary_key_version_id": config.primary_version_id,
                "secondary_key_version_id": config.secondary_version_id,
                "updated_at": rfc3339(config.updated_at),
            }
            if (svc.ref.key, config.name) in policies:
                view = await app.get_rotation_policy(svc.ref, config.name)
                shown = view.describe()
                entry[_ACCESS_KEYS[config.name]]["rotation_policy"] = view.policy.document()
                entry[_ACCESS_KEYS[config.name]]["rotation_status"] = shown["status"]
        services.append(entry)
    document: dict[str, Any] = {"version": FORMAT_VERSION, "services": services}
    declared = await app.store.list_subscriptions()
    if declared:
        document["subscriptions"] = [{"id": sub.id, "name": sub.display_name} for sub in declared]
    return document


async def provision_file(settings_path: Path, store_app: TenantAccess) -> list[SeedResult]:
    """``serve --seed FILE``: parse, then apply as the system."""
    return await apply(store_app, SYSTEM, parse(load_file(settings_path)))

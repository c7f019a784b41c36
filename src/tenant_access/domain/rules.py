"""Parameter rules from the Azure specification (``apimtenant.json``, ``apimdeployment.json``).

Each check adds to a :class:`Problems` list rather than raising, so one answer can name every bad
field of a request at once.
"""

from __future__ import annotations

import re
from typing import Any

from tenant_access.domain.errors import Problems
from tenant_access.domain.models import AccessName, ServiceSpec

#: The patterns of the path parameters, shared with the OpenAPI documents (which must describe
#: exactly what is accepted). They are used with ``fullmatch``: JSON Schema's ``$`` is the end of
#: the text, where Python's ``$`` would also accept a trailing newline.
GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: The specification's character set; like Azure, a name may not end with a period (which also
#: keeps "." and "..", which clients collapse as dot-segments, from being names).
RESOURCE_GROUP_PATTERN = r"^[-\w._()]*[-\w_()]$"
SERVICE_NAME_PATTERN = r"^[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$"
_GUID = re.compile(GUID_PATTERN.rstrip("$"))
_RESOURCE_GROUP = re.compile(RESOURCE_GROUP_PATTERN.rstrip("$"))
_SERVICE_NAME = re.compile(SERVICE_NAME_PATTERN.rstrip("$"))
_ACCESS_NAMES = {name.value.lower(): name for name in AccessName}

SKU_NAMES = ("Developer", "Standard", "Premium", "Basic", "Consumption", "Isolated", "BasicV2", "StandardV2")
#: Caller-supplied keys must be at least this long: a short key makes a guessable signature.
MIN_SUPPLIED_KEY_LENGTH = 32
MAX_SUPPLIED_KEY_LENGTH = 256
MAX_PRINCIPAL_ID_LENGTH = 256
#: Visible ASCII without ``&`` and ``=`` (a principal id is the ``uid`` of a shared access signature,
#: whose header is ASCII); shared with the OpenAPI documents.
PRINCIPAL_ID_PATTERN = rf"^[!-%'-<>-~]{{1,{MAX_PRINCIPAL_ID_LENGTH}}}$"
#: A caller-chosen key: visible ASCII (no spaces), 32 to 256 characters.
SUPPLIED_KEY_PATTERN = rf"^[!-~]{{{MIN_SUPPLIED_KEY_LENGTH},{MAX_SUPPLIED_KEY_LENGTH}}}$"
_PRINCIPAL_ID = re.compile(PRINCIPAL_ID_PATTERN.rstrip("$"))
_SUPPLIED_KEY = re.compile(SUPPLIED_KEY_PATTERN.rstrip("$"))


def is_guid(value: str) -> bool:
    return _GUID.fullmatch(value) is not None


def check_subscription_id(value: str, problems: Problems) -> None:
    if not _GUID.fullmatch(value):
        problems.add("path.subscriptionId", "must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")


def check_resource_group(value: str, problems: Problems) -> None:
    if not 1 <= len(value) <= 90:
        problems.add("path.resourceGroupName", "must be 1 to 90 characters long")
    elif not _RESOURCE_GROUP.fullmatch(value):
        problems.add(
            "path.resourceGroupName",
            "may contain only letters, digits, underscores, hyphens, periods and parentheses, "
            "and may not end with a period",
        )


def check_service_name(value: str, problems: Problems) -> None:
    if not 1 <= len(value) <= 50:
        problems.add("path.serviceName", "must be 1 to 50 characters long")
    elif not _SERVICE_NAME.fullmatch(value):
        problems.add(
            "path.serviceName",
            "must start with a letter, contain only letters, digits and hyphens, and not end with a hyphen",
        )


def parse_access_name(value: str, problems: Problems) -> AccessName | None:
    """Case-insensitive, like every name in Azure Resource Manager; answers the canonical spelling."""
    name = _ACCESS_NAMES.get(value.lower())
    if name is None:
        problems.add("path.accessName", "must be 'access' or 'gitAccess'")
    return name


def check_path_params(params: dict[str, str], problems: Problems) -> None:
    """Check every known path parameter present; ``accessName`` is rewritten to its canonical case."""
    if "subscriptionId" in params:
        check_subscription_id(params["subscriptionId"], problems)
    if "resourceGroupName" in params:
        check_resource_group(params["resourceGroupName"], problems)
    if "serviceName" in params:
        check_service_name(params["serviceName"], problems)
    if "accessName" in params:
        name = parse_access_name(params["accessName"], problems)
        if name is not None:
            params["accessName"] = name.value


def _expect_object(value: Any, where: str, problems: Problems) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        problems.add(where, "must be a JSON object")
        return None
    return value


def _string(obj: dict[str, Any], key: str, where: str, problems: Problems, *, max_length: int = 100,
            required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            problems.add(where, "required")
        return None
    if not isinstance(value, str):
        problems.add(where, "must be a string")
        return None
    if not value.strip() and required:
        problems.add(where, "must not be empty")
        return None
    if len(value) > max_length:
        problems.add(where, f"must be at most {max_length} characters long")
        return None
    return value


def parse_service_spec(body: Any, problems: Problems) -> ServiceSpec | None:
    """The minimum of ``ApiManagementServiceResource`` the specification requires, checked."""
    obj = _expect_object(body, "body", problems)
    if obj is None:
        return None
    location = _string(obj, "location", "body.location", problems)
    sku = _expect_object(obj.get("sku"), "body.sku", problems) if "sku" in obj else None
    if "sku" not in obj:
        problems.add("body.sku", "required")
    sku_name = capacity = None
    if sku is not None:
        sku_name = _string(sku, "name", "body.sku.name", problems)
        if sku_name is not None and sku_name.lower() not in {s.lower() for s in SKU_NAMES}:
            problems.add("body.sku.name", "must be one of " + ", ".join(SKU_NAMES))
            sku_name = None
        raw_capacity = sku.get("capacity")
        if type(raw_capacity) is float and raw_capacity.is_integer():
            raw_capacity = int(raw_capacity)  # JSON has one number type: 2.0 is the integer 2
        if raw_capacity is None:
            problems.add("body.sku.capacity", "required")
        elif type(raw_capacity) is not int or not 0 <= raw_capacity <= 2**31 - 1:
            problems.add("body.sku.capacity", "must be a non-negative 32-bit integer")
        else:
            capacity = raw_capacity
    props = None
    if "properties" not in obj:
        problems.add("body.properties", "required")
    else:
        props = _expect_object(obj.get("properties"), "body.properties", problems)
    email = name = None
    if props is not None:
        email = _string(props, "publisherEmail", "body.properties.publisherEmail", problems)
        name = _string(props, "publisherName", "body.properties.publisherName", problems)
    tags: dict[str, str] = {}
    if "tags" in obj and obj["tags"] is not None:
        raw_tags = _expect_object(obj["tags"], "body.tags", problems)
        if raw_tags is not None:
            for key, value in raw_tags.items():
                if not isinstance(value, str) or len(key) > 512 or len(value) > 256:
                    problems.add(f"body.tags.{key[:40]}", "tag values must be strings of at most 256 characters")
                else:
                    tags[key] = value
            if len(raw_tags) > 50:
                problems.add("body.tags", "at most 50 tags")
    if problems.items or location is None or sku_name is None or capacity is None or email is None or name is None:
        return None
    canonical_sku = next(s for s in SKU_NAMES if s.lower() == sku_name.lower())
    return ServiceSpec(location, canonical_sku, capacity, email, name, tags)


def _properties(body: Any, problems: Problems) -> dict[str, Any] | None:
    obj = _expect_object(body, "body", problems)
    if obj is None:
        return None
    if "properties" not in obj or obj["properties"] is None:
        return {}
    return _expect_object(obj["properties"], "body.properties", problems)


def _optional_bool(props: dict[str, Any], key: str, problems: Problems) -> bool | None:
    value = props.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        problems.add(f"body.properties.{key}", "must be true or false")
        return None
    return value


def _optional_key(props: dict[str, Any], key: str, problems: Problems) -> str | None:
    value = props.get(key)
    if value is None:
        return None
    where = f"body.properties.{key}"
    if not isinstance(value, str):
        problems.add(where, "must be a string")
    elif not MIN_SUPPLIED_KEY_LENGTH <= len(value) <= MAX_SUPPLIED_KEY_LENGTH:
        problems.add(
            where, f"must be {MIN_SUPPLIED_KEY_LENGTH} to {MAX_SUPPLIED_KEY_LENGTH} characters long"
        )
    elif not _SUPPLIED_KEY.fullmatch(value):
        problems.add(where, "must be printable ASCII without spaces")
    else:
        return value
    return None


def parse_access_create(body: Any, problems: Problems) -> dict[str, Any]:
    """``AccessInformationCreateParameters``: principalId, enabled, and optionally both keys."""
    props = _properties(body, problems)
    if props is None:
        return {}
    out: dict[str, Any] = {}
    if props.get("principalId") is not None:
        principal = _string(props, "principalId", "body.properties.principalId", problems,
                            max_length=MAX_PRINCIPAL_ID_LENGTH)
        if principal is not None and not _PRINCIPAL_ID.fullmatch(principal):
            problems.add("body.properties.principalId", "must be printable ASCII, without spaces, '&' or '='")
        elif principal is not None:
            out["principal_id"] = principal
    enabled = _optional_bool(props, "enabled", problems)
    if enabled is not None:
        out["enabled"] = enabled
    for wire, name in (("primaryKey", "primary_key"), ("secondaryKey", "secondary_key")):
        key = _optional_key(props, wire, problems)
        if key is not None:
            out[name] = key
    return out


def parse_access_update(body: Any, problems: Problems) -> dict[str, Any]:
    """``AccessInformationUpdateParameters``: only ``enabled`` may change through PATCH."""
    props = _properties(body, problems)
    if props is None:
        return {}
    for key in ("principalId", "primaryKey", "secondaryKey"):
        if key in props:
            problems.add(f"body.properties.{key}", "cannot be changed with PATCH; use PUT")
    enabled = _optional_bool(props, "enabled", problems)
    return {} if enabled is None else {"enabled": enabled}

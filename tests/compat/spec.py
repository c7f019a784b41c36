"""The official specification as test data: where it is, its examples, and checks against it.

The reference copy lives in ``shared/`` beside the repository (``../shared`` from the repo root),
never inside it. Everything here reads that copy; nothing is vendored into the tests.

Two checks compare a real answer with the specification:

- :func:`shape_problems` compares it with an example: every key the example has must be there
  with the same JSON type (values may differ), except keys listed in :data:`NOT_MODELLED`.
- :func:`schema_problems` compares it with the operation's response schema: it must validate,
  and it must not carry keys the schema does not declare (the schemas allow extra keys, so
  validation alone would not notice an invented field).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urldefrag, urljoin

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = (REPO_ROOT / ".." / "shared").resolve()
SPECS = SHARED / "reference" / "azure-rest-api-specs" / "specification"
_APIM = SPECS / "apimanagement" / "resource-manager" / "Microsoft.ApiManagement"
#: The specification folders the replay covers, newest first.
VERSION_DIRS = {
    "2024-05-01": _APIM / "ApiManagement" / "stable" / "2024-05-01",
    "2022-08-01": _APIM / "stable" / "2022-08-01",
}
SPEC_FILES = ("apimtenant.json", "apimdeployment.json")

TENANT_OPERATIONS = (
    "TenantAccess_ListByService", "TenantAccess_GetEntityTag", "TenantAccess_Get", "TenantAccess_Create",
    "TenantAccess_Update", "TenantAccess_RegeneratePrimaryKey", "TenantAccess_RegenerateSecondaryKey",
    "TenantAccess_ListSecrets", "TenantAccessGit_RegeneratePrimaryKey", "TenantAccessGit_RegenerateSecondaryKey",
)
SERVICE_OPERATIONS = (
    "ApiManagementService_CreateOrUpdate", "ApiManagementService_Get", "ApiManagementService_Delete",
    "ApiManagementService_ListByResourceGroup",
)
#: The tenant-access examples the reference copy is known to hold; if one is missing the copy is broken.
TENANT_EXAMPLE_FILES = (
    "ApiManagementListTenantAccess.json", "ApiManagementHeadTenantAccess.json", "ApiManagementGetTenantAccess.json",
    "ApiManagementGetTenantGitAccess.json", "ApiManagementCreateTenantAccess.json",
    "ApiManagementUpdateTenantAccess.json", "ApiManagementTenantAccessRegenerateKey.json",
    "ApiManagementListSecretsTenantAccess.json",
)

#: Keys of the service examples that describe Azure features this server does not model (networks,
#: identities, zones, extra regions, certificates, who made a change). docs/azure-compatibility.md
#: lists the same features; ``[]`` stands for "any item of the list".
NOT_MODELLED = frozenset({
    "identity", "zones",
    "systemData.createdBy", "systemData.createdByType", "systemData.lastModifiedBy",
    "systemData.lastModifiedByType",
    "properties.publicIPAddresses", "properties.privateIPAddresses", "properties.outboundPublicIPAddresses",
    "properties.additionalLocations", "properties.virtualNetworkConfiguration", "properties.publicIpAddressId",
    "properties.natGatewayState", "properties.certificates", "properties.apiVersionConstraint",
    "properties.privateEndpointConnections", "properties.configurationApi",
    "properties.hostnameConfigurations[].keyVaultId", "properties.hostnameConfigurations[].certificate",
    "properties.hostnameConfigurations[].identityClientId",
})


def missing_reference() -> str | None:
    """Why the reference copy cannot be used, or None when it can."""
    for version, folder in VERSION_DIRS.items():
        for name in (*SPEC_FILES, *(f"examples/{e}" for e in TENANT_EXAMPLE_FILES)):
            if not (folder / name).is_file():
                return (
                    f"The Azure specification reference is missing: {folder / name} does not exist "
                    f"(api-version {version}). The compatibility tests read it from the 'shared' folder "
                    f"beside the repository ({SHARED}); check it out next to the repo root."
                )
    return None


@dataclass(frozen=True)
class Example:
    version: str
    operation: str
    method: str
    path: str
    spec_file: Path
    file: Path

    @property
    def id(self) -> str:
        return f"{self.version}/{self.operation}/{self.file.stem.removeprefix('ApiManagement')}"

    def load(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.file.read_text(encoding="utf-8"))
        return data

    def operation_spec(self) -> dict[str, Any]:
        op: dict[str, Any] = load_json(self.spec_file)["paths"][self.path][self.method]
        return op


def examples() -> Iterator[Example]:
    """Every stored example of the operations the server implements, as the specification lists them."""
    wanted = set(TENANT_OPERATIONS) | set(SERVICE_OPERATIONS)
    for version, folder in VERSION_DIRS.items():
        for spec_name in SPEC_FILES:
            spec_file = folder / spec_name
            for path, item in load_json(spec_file)["paths"].items():
                for method, op in item.items():
                    if not isinstance(op, dict) or op.get("operationId") not in wanted:
                        continue
                    for ref in op.get("x-ms-examples", {}).values():
                        file = (folder / ref["$ref"]).resolve()
                        # The reference copy holds a chosen subset of the service examples.
                        if file.is_file():
                            yield Example(version, op["operationId"], method, path, spec_file, file)


@cache
def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# -- comparison with an example ------------------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def shape_problems(example: Any, actual: Any, where: str = "", allowed: frozenset[str] = frozenset()) -> list[str]:
    """Where ``actual`` lacks a key of ``example`` or has a different JSON type there."""
    if example is None:
        return []
    if _kind(example) != _kind(actual):
        return [f"{where or '<body>'}: expected {_kind(example)}, got {_kind(actual)}"]
    problems: list[str] = []
    if isinstance(example, dict):
        # Maps with free keys (tags, customProperties): the keys are data, only the value type matters.
        free = where.endswith(("tags", "customProperties", "userAssignedIdentities"))
        for key, value in example.items():
            path = f"{where}.{key}" if where else key
            if free:
                if actual:
                    problems += shape_problems(value, next(iter(actual.values())), path, allowed)
                continue
            if key not in actual:
                if path not in allowed:
                    problems.append(f"{path}: missing")
                continue
            problems += shape_problems(value, actual[key], path, allowed)
    elif isinstance(example, list) and example and actual:
        for item in example:
            problems += shape_problems(item, actual[0], f"{where}[]", allowed)
    return problems


# -- comparison with the schema -------------------------------------------------------------------


def _uri(path: Path) -> str:
    return path.resolve().as_uri()


def response_schema_ref(example: Example, status: str) -> str | None:
    """A JSON reference to the response schema of ``status`` (or ``default``), None if it has no body."""
    response = example.operation_spec()["responses"].get(status)
    if response is None or "schema" not in response:
        return None
    pointer = "/".join(p.replace("~", "~0").replace("/", "~1")
                       for p in ("paths", example.path, example.method, "responses", status, "schema"))
    return f"{_uri(example.spec_file)}#/{quote(pointer, safe='/~')}"


def _retrieve(uri: str) -> Any:
    from referencing import Resource
    from referencing.jsonschema import DRAFT4

    path = Path(urldefrag(uri).url.removeprefix("file://"))
    return Resource.from_contents(load_json(path), default_specification=DRAFT4)


def schema_problems(schema_ref: str, instance: Any) -> list[str]:
    """Validation errors, then keys the schema does not declare."""
    from jsonschema import Draft4Validator
    from referencing import Registry

    registry: Registry[Any] = Registry(retrieve=_retrieve)
    validator = Draft4Validator({"$ref": schema_ref}, registry=registry)
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
                for e in validator.iter_errors(instance)]
    problems += _undeclared(schema_ref, instance, "")
    return problems


def _resolve(ref: str) -> tuple[dict[str, Any], str]:
    """The schema a reference points at, and the URI its own relative references start from."""
    url, fragment = urldefrag(ref)
    node: Any = load_json(Path(url.removeprefix("file://")))
    for part in filter(None, fragment.split("/")):
        from urllib.parse import unquote

        node = node[unquote(part).replace("~1", "/").replace("~0", "~")]
    return node, url


def _declared(schema: dict[str, Any], base: str) -> tuple[dict[str, tuple[dict[str, Any], str]], bool]:
    """Declared properties (with the base each was declared in), and whether free keys are allowed."""
    if "$ref" in schema:
        target, target_base = _resolve(urljoin(base, schema["$ref"]))
        return _declared(target, target_base)
    props = {name: (sub, base) for name, sub in schema.get("properties", {}).items()}
    free = isinstance(schema.get("additionalProperties"), dict) or schema.get("additionalProperties") is True
    for part in schema.get("allOf", []):
        more, more_free = _declared(part, base)
        props.update(more)
        free = free or more_free
    return props, free


def _undeclared(ref_or_schema: str | tuple[dict[str, Any], str], instance: Any, where: str) -> list[str]:
    if isinstance(ref_or_schema, str):
        schema, base = _resolve(ref_or_schema)
    else:
        schema, base = ref_or_schema
    while "$ref" in schema:
        schema, base = _resolve(urljoin(base, schema["$ref"]))
    problems: list[str] = []
    if isinstance(instance, dict):
        props, free = _declared(schema, base)
        for key, value in instance.items():
            path = f"{where}.{key}" if where else key
            if key in props:
                problems += _undeclared(props[key], value, path)
            elif not free:
                problems.append(f"{path}: not declared in the specification")
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            problems += _undeclared((schema["items"], base), item, f"{where}[]")
    return problems

"""Every stored ``x-ms-examples`` file of the implemented operations, replayed against the server.

For each example the request is sent as the example describes it (method, path, api-version,
headers, body), with fresh names in place of the example's so replays never collide. The answer
must have a status the example lists, the example's body shape (keys and JSON types; values are
free), the headers the specification declares, and nothing the specification does not declare.

Service examples describe features this server does not model (virtual networks, managed
identities, zones, extra regions, certificates); their keys are listed once, in
``spec.NOT_MODELLED``, and in docs/azure-compatibility.md.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.compat import spec
from tests.compat.conftest import SERVICE_BODY, SUBSCRIPTION, unique

try:
    EXAMPLES = list(spec.examples()) if spec.missing_reference() is None else []
except (OSError, ValueError):  # a damaged copy: reported by the reference fixture below
    EXAMPLES = []
# Without the reference copy there is nothing to parametrize over; one failing case says why.
CASES = [pytest.param(e, id=e.id) for e in EXAMPLES] or [pytest.param(None, id="reference-missing")]


def _url(example: spec.Example, params: dict[str, str]) -> str:
    path = example.path
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, path
    return path


def _send(http: httpx.Client, example: spec.Example, path: str, version: str, data: dict[str, Any]) -> httpx.Response:
    headers = {"If-Match": data["If-Match"]} if "If-Match" in data else {}
    body = data.get("parameters")
    return http.request(example.method.upper(), path, params={"api-version": version}, headers=headers,
                        json=body if example.method in ("put", "patch") else None)


def _service_body(resource: dict[str, Any]) -> dict[str, Any]:
    """A create body for a service that looks like ``resource`` (so a Consumption example is
    compared with a Consumption service)."""
    props = resource.get("properties", {})
    return {
        "location": resource.get("location", "West Europe"),
        "sku": {"name": resource["sku"]["name"], "capacity": resource["sku"]["capacity"]},
        "properties": {"publisherEmail": props.get("publisherEmail", "ops@example.com"),
                       "publisherName": props.get("publisherName", "Ops")},
        "tags": resource.get("tags", {}),
    }


def _check(example: spec.Example, status: int, response: httpx.Response, expected: dict[str, Any],
           *, body: bool = True) -> None:
    """The answer against the example's response for ``status`` and the specification; with
    ``body=False`` only status and headers (the caller compares the body itself)."""
    assert str(status) in expected, f"status {status} is not one the example lists: {sorted(expected)}"
    assert response.status_code == status, response.text
    wanted = expected[str(status)]
    declared = example.operation_spec()["responses"][str(status)].get("headers", {})
    for header in declared:
        if header.lower() != "location":  # only long-running answers, which this server never gives
            assert header in response.headers, f"{header} is declared by the specification but missing"
    if not body:
        return
    if "body" not in wanted:
        assert response.content == b"", response.text
        return
    actual = response.json()
    allowed = spec.NOT_MODELLED if example.operation.startswith("ApiManagementService") else frozenset()
    problems = spec.shape_problems(wanted["body"], actual, allowed=allowed)
    ref = spec.response_schema_ref(example, str(status))
    assert ref is not None
    problems += spec.schema_problems(ref, actual)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("example", CASES)
def test_example(example: spec.Example | None, reference: object, https: httpx.Client) -> None:
    assert example is not None, "no examples found"  # the reference fixture fails first with the reason
    data = example.load()
    params = data["parameters"]
    version = params["api-version"]
    expected = data["responses"]
    rg, name = unique("rg"), unique("ex")
    path_params = {"subscriptionId": SUBSCRIPTION, "resourceGroupName": rg, "serviceName": name}
    if "accessName" in params:
        path_params["accessName"] = params["accessName"]
    path = _url(example, path_params)
    service = _url(example, path_params) if example.operation.startswith("ApiManagementService_") else None
    op = example.operation

    if op.startswith("TenantAccess"):
        created = https.put(f"{path.split('/tenant/')[0].removesuffix('/tenant')}?api-version={version}",
                            json=SERVICE_BODY)
        assert created.status_code == 201, created.text
        response = _send(https, example, path, version, params)
        _check(example, int(next(iter(expected))), response, expected)
    elif op == "ApiManagementService_CreateOrUpdate":
        _check(example, 201, _send(https, example, path, version, params), expected)
        _check(example, 200, _send(https, example, path, version, params), expected)
    elif op == "ApiManagementService_Get":
        assert service is not None
        created = https.put(service, params={"api-version": version}, json=_service_body(expected["200"]["body"]))
        assert created.status_code == 201, created.text
        _check(example, 200, _send(https, example, path, version, params), expected)
    elif op == "ApiManagementService_Delete":
        created = https.put(path, params={"api-version": version}, json=SERVICE_BODY)
        assert created.status_code == 201, created.text
        _check(example, 200, _send(https, example, path, version, params), expected)
        _check(example, 204, _send(https, example, path, version, params), expected)
    elif op == "ApiManagementService_ListByResourceGroup":
        items = expected["200"]["body"]["value"]
        names = [f"{name}-{i}" for i in range(len(items))]
        for item, service_name in zip(items, names, strict=True):
            created = https.put(f"{path}/{service_name}", params={"api-version": version}, json=_service_body(item))
            assert created.status_code == 201, created.text
        response = _send(https, example, path, version, params)
        _check(example, 200, response, expected, body=False)  # items are compared one by one below
        listed = {s["name"]: s for s in response.json()["value"]}
        assert sorted(listed) == sorted(names)
        for item, service_name in zip(items, names, strict=True):
            problems = spec.shape_problems(item, listed[service_name], allowed=spec.NOT_MODELLED)
            assert not problems, f"{item['name']}:\n" + "\n".join(problems)
        ref = spec.response_schema_ref(example, "200")
        assert ref is not None
        assert not spec.schema_problems(ref, response.json())
    else:  # pragma: no cover - a new operation in scope needs its own preparation
        pytest.fail(f"no replay recipe for {op}")


def test_every_tenant_access_operation_has_examples(reference: object) -> None:
    """Guards the replay itself: a loader that silently found nothing would pass every example."""
    found = {(e.version, e.operation) for e in EXAMPLES}
    for version in spec.VERSION_DIRS:
        for operation in (*spec.TENANT_OPERATIONS, *spec.SERVICE_OPERATIONS):
            assert (version, operation) in found, f"no example replayed for {operation} in {version}"


def test_the_shape_check_notices_differences() -> None:
    example = {"id": "x", "properties": {"enabled": True, "principalId": "git"}, "count": 1}
    same_shape = {"id": "y", "properties": {"enabled": False, "principalId": "p"}, "count": 3}
    assert spec.shape_problems(example, same_shape) == []
    wrong_type = {"id": "y", "properties": {"enabled": "true", "principalId": "p"}, "count": 1}
    assert spec.shape_problems(example, wrong_type) == ["properties.enabled: expected boolean, got string"]
    missing = {"id": "y", "properties": {"enabled": True}, "count": 1}
    assert spec.shape_problems(example, missing) == ["properties.principalId: missing"]


def test_the_schema_check_notices_invented_fields(reference: object) -> None:
    example = next(e for e in EXAMPLES if e.operation == "TenantAccess_Get")
    ref = spec.response_schema_ref(example, "200")
    assert ref is not None
    good = {"id": "/x", "type": "t", "name": "access", "properties": {"enabled": True}}
    assert spec.schema_problems(ref, good) == []
    bad = {"id": "/x", "type": "t", "name": "access", "properties": {"enabled": 1, "primaryKey": "k"}}
    assert spec.schema_problems(ref, bad) == [
        "properties/enabled: 1 is not of type 'boolean'",
        "properties.primaryKey: not declared in the specification",
    ]

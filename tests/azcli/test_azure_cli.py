"""The unmodified Azure CLI against Azure mode: register the server as a cloud (with endpoint
discovery), sign in as a service principal, and rotate keys with ``az rest`` and ``az apim``.

One server and one signed-in configuration per identity serve the whole module; each ``az`` call
costs a second or two, so the tests share them and each checks several things.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.azcli.conftest import CLOUD, OTHER_SUB, SUB, Az, make_az, sign_in
from tests.serverproc import ServerProcess

#: The first run installs azure-cli into the cache (about 90 s); later runs take about 10 s.
pytestmark = pytest.mark.slow
V = "api-version=2024-05-01"
BODY = {"location": "westeurope", "sku": {"name": "Developer", "capacity": 1},
        "properties": {"publisherEmail": "ops@example.com", "publisherName": "Ops"}}


def service_path(sub: str, rg: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}"


SVC = service_path(SUB, "rg-one", "apim-one")
OTHER_SVC = service_path(OTHER_SUB, "rg-two", "apim-two")


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    assert server.cert_path is not None
    trust = ssl.create_default_context(cafile=str(server.cert_path))
    with httpx.Client(base_url=server.url, headers=server.auth(), verify=trust, timeout=20) as client:
        for path in (SVC, OTHER_SVC):
            assert client.put(f"{path}?{V}", json=BODY).status_code == 201
        yield client


@pytest.fixture(scope="module")
def owner(az_python: Path, server: ServerProcess, http: httpx.Client,
          tmp_path_factory: pytest.TempPathFactory) -> Az:
    az = make_az(az_python, server, tmp_path_factory.mktemp("az-owner"))
    sign_in(az, server, "owner", "/")
    az.run("account", "set", "--subscription", SUB)
    return az


def _secrets(az: Az, path: str = SVC) -> dict[str, str]:
    found: dict[str, str] = az.json("rest", "--method", "post", "--url", f"{path}/tenant/access/listSecrets?{V}")
    return found


def test_the_cloud_is_registered_by_discovery_and_the_principal_signed_in(owner: Az, server: ServerProcess) -> None:
    cloud = owner.json("cloud", "show", "--name", CLOUD)
    assert cloud["isActive"] is True
    assert cloud["endpoints"]["resourceManager"] == server.url + "/"  # read from /metadata/endpoints
    assert cloud["endpoints"]["activeDirectory"] == server.url
    assert cloud["endpoints"]["activeDirectoryResourceId"] == "https://management.core.windows.net/"
    account = owner.json("account", "show")
    assert account["id"] == SUB
    assert account["state"] == "Enabled"
    assert account["environmentName"] == CLOUD
    assert account["user"]["type"] == "servicePrincipal"
    listed = {a["id"] for a in owner.json("account", "list")}
    assert listed == {SUB, OTHER_SUB}


def test_az_rest_regenerates_the_secondary_key(owner: Az, http: httpx.Client) -> None:
    before = _secrets(owner)
    done = owner.run("rest", "--method", "post", "--url", f"{SVC}/tenant/access/regenerateSecondaryKey?{V}")
    assert done.stdout.strip() == ""  # 204: no body
    after = _secrets(owner)
    assert after["secondaryKey"] != before["secondaryKey"]
    assert after["primaryKey"] == before["primaryKey"]
    assert len(after["secondaryKey"]) == 88
    records = http.get(f"{SVC}/auditEvents?{V}&operation=access.regenerate_secondary_key").json()["value"]
    assert [r["status"] for r in records] == [204]


def test_az_rest_get_and_patch_with_if_match(owner: Az, http: httpx.Client) -> None:
    got = owner.json("rest", "--method", "get", "--url", f"{SVC}/tenant/access?{V}")
    assert got["name"] == "access" and "primaryKey" not in json.dumps(got)
    etag = http.get(f"{SVC}/tenant/access?{V}").headers["ETag"]
    patched = owner.json("rest", "--method", "patch", "--url", f"{SVC}/tenant/access?{V}",
                         "--headers", f"If-Match={etag}", "--body", json.dumps({"properties": {"enabled": True}}))
    assert patched["properties"]["enabled"] is True
    stale = owner.run("rest", "--method", "patch", "--url", f"{SVC}/tenant/access?{V}", "--headers",
                      f"If-Match={etag}", "--body", json.dumps({"properties": {"enabled": False}}), ok=False)
    assert stale.returncode != 0
    assert "PreconditionFailed" in stale.stderr
    assert owner.json("rest", "--method", "get", "--url", f"{SVC}/tenant/access?{V}")["properties"]["enabled"] is True


def test_az_apim_show_and_list(owner: Az) -> None:
    shown = owner.json("apim", "show", "--resource-group", "rg-one", "--name", "apim-one")
    assert shown["id"] == SVC
    assert shown["provisioningState"] == "Succeeded"
    in_group = owner.json("apim", "list", "--resource-group", "rg-one")
    assert [s["name"] for s in in_group] == ["apim-one"]
    in_subscription = owner.json("apim", "list")
    assert [s["id"] for s in in_subscription] == [SVC]  # the other subscription's service is not listed


def test_az_apim_create_and_delete(owner: Az, http: httpx.Client) -> None:
    # In an existing group az reads the group for its location; in a new one it needs --location.
    created = owner.json("apim", "create", "--resource-group", "rg-one", "--name", "apim-made",
                         "--publisher-email", "ops@example.com", "--publisher-name", "Ops", "--sku-name", "Developer")
    assert created["provisioningState"] == "Succeeded" and created["location"] == "westeurope"
    elsewhere = owner.json("apim", "create", "--resource-group", "rg-new", "--name", "apim-new", "--location",
                           "northeurope", "--publisher-email", "ops@example.com", "--publisher-name", "Ops",
                           "--sku-name", "Consumption")
    assert elsewhere["sku"]["name"] == "Consumption"
    made = service_path(SUB, "rg-one", "apim-made")
    assert http.post(f"{made}/tenant/access/listSecrets?{V}").status_code == 200
    owner.run("apim", "delete", "--resource-group", "rg-one", "--name", "apim-made", "--yes")
    owner.run("apim", "delete", "--resource-group", "rg-new", "--name", "apim-new", "--yes")
    assert http.get(f"{made}?{V}").status_code == 404
    gone = owner.run("apim", "show", "--resource-group", "rg-one", "--name", "apim-made", ok=False)
    assert gone.returncode != 0 and "ResourceNotFound" in gone.stderr


def test_unknown_resource_manager_paths_answer_its_404(owner: Az) -> None:
    done = owner.run("rest", "--method", "get", "--url",
                     f"/subscriptions/{SUB}/providers/Microsoft.Nothing/things?api-version=2024-01-01", ok=False)
    assert done.returncode != 0
    assert '{"error":{"code":"NotFound"' in done.stderr.replace(" ", "")


def test_a_principal_of_one_subscription_sees_and_reaches_only_it(
        az_python: Path, server: ServerProcess, http: httpx.Client, tmp_path: Path) -> None:
    az = make_az(az_python, server, tmp_path)
    sign_in(az, server, "key-operator", f"/subscriptions/{SUB}")
    assert [a["id"] for a in az.json("account", "list")] == [SUB]
    assert "primaryKey" in _secrets(az)
    other = az.run("account", "set", "--subscription", OTHER_SUB, ok=False)
    assert other.returncode != 0
    # az itself will not send a request into a subscription it does not list; with the principal's
    # own token the server is asked, and refuses in Resource Manager's shape.
    token = az.json("account", "get-access-token")["accessToken"]
    refused = az.run("rest", "--method", "post", "--url", f"{server.url}{OTHER_SVC}/tenant/access/listSecrets?{V}",
                     "--skip-authorization-header", "--headers", f"Authorization=Bearer {token}", ok=False)
    assert refused.returncode != 0
    assert '{"error":{"code":"AuthorizationFailed"' in refused.stderr.replace(" ", ""), refused.stderr
    assert http.post(f"{OTHER_SVC}/tenant/access/listSecrets?{V}").status_code == 200  # it exists


def test_the_printed_sign_in_takes_a_secret_that_begins_with_a_dash(
        az_python: Path, server: ServerProcess, tmp_path: Path) -> None:
    """A client secret is random base64url text, so one in 64 begins with "-", which az's argument
    parser takes for an option unless it is written ``--password=...`` (seen in CI: a sign-in
    failing at random with "expected one argument")."""
    from tests.azcli.conftest import create_principal, tenant_access

    az = make_az(az_python, server, tmp_path)
    client_id, _ = create_principal(server, "reader", "/")
    recipe = tenant_access("azure-cli", "--api-style", "azure", "--tls", "--port", str(server.port),
                           "--data-dir", str(server.data_dir), "--client-id", client_id)
    done = az.script(recipe, "-Not-the-secret")
    assert "expected one argument" not in done.stderr, done.stderr
    assert done.returncode != 0  # the secret is wrong: refused by the token endpoint, not by az's parser
    assert "invalid_client" in done.stderr or "secret is not valid" in done.stderr, done.stderr

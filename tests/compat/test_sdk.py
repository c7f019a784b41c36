"""The unmodified ``azure-mgmt-apimanagement`` SDK against a real server process in Azure mode.

Each test makes the SDK do what a user's script would, then checks the effect through the SDK
itself: if the server answered with a status, header or body shape the SDK does not expect, the
SDK raises, and the test fails there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.mgmt.apimanagement import ApiManagementClient
from azure.mgmt.apimanagement.models import (
    AccessInformationCreateParameters,
    AccessInformationSecretsContract,
    AccessInformationUpdateParameters,
    ApiManagementServiceResource,
    ApiManagementServiceSkuProperties,
)

from tests.compat.conftest import SUBSCRIPTION, service_path, unique
from tests.serverproc import ServerProcess

Client = ApiManagementClient
Svc = tuple[str, str]


def _etag_of(client: ApiManagementClient, rg: str, name: str, access: str = "access") -> str:
    etag: str = client.tenant_access.get(rg, name, access, cls=lambda _resp, _body, headers: headers["ETag"])
    return etag


def _secrets(client: Client, rg: str, name: str, access: str = "access") -> AccessInformationSecretsContract:
    return client.tenant_access.list_secrets(rg, name, access)


def _new_service(client: Client, rg: str, name: str, sku: str = "Developer") -> ApiManagementServiceResource:
    poller = client.api_management_service.begin_create_or_update(
        rg, name,
        ApiManagementServiceResource(
            location="West Europe",
            sku=ApiManagementServiceSkuProperties(name=sku, capacity=0 if sku == "Consumption" else 1),
            publisher_email="ops@example.com", publisher_name="Ops", tags={"team": "compat"},
        ),
        polling_interval=0,
    )
    result: ApiManagementServiceResource = poller.result(timeout=30)
    assert poller.done()
    return result


@pytest.fixture
def sdk_service(client: ApiManagementClient) -> tuple[str, str]:
    rg, name = unique("rg"), unique("sdk")
    _new_service(client, rg, name)
    return rg, name


def test_create_service_with_the_poller_finishes_at_once(client: ApiManagementClient) -> None:
    rg, name = unique("rg"), unique("sdk")
    created = _new_service(client, rg, name)
    assert created.provisioning_state == "Succeeded"
    assert created.id == service_path(rg, name, SUBSCRIPTION)
    assert created.type == "Microsoft.ApiManagement/service"
    assert created.name == name
    assert created.sku.name == "Developer"
    assert created.sku.capacity == 1
    assert created.tags == {"team": "compat"}
    assert created.publisher_email == "ops@example.com"
    assert created.etag

    fetched = client.api_management_service.get(rg, name)
    assert fetched.id == created.id
    assert fetched.etag == created.etag
    assert fetched.provisioning_state == "Succeeded"


def test_update_service_answers_200_through_the_poller(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    before = client.api_management_service.get(rg, name)
    poller = client.api_management_service.begin_create_or_update(
        rg, name,
        ApiManagementServiceResource(
            location="westeurope", sku=ApiManagementServiceSkuProperties(name="Premium", capacity=2),
            publisher_email="new@example.com", publisher_name="New",
        ),
        polling_interval=0,
    )
    status: list[int] = []
    updated = poller.result(timeout=30)
    assert updated.sku.name == "Premium"
    assert updated.sku.capacity == 2
    assert updated.publisher_email == "new@example.com"
    assert updated.etag != before.etag
    client.api_management_service.get(rg, name, cls=lambda resp, _b, _h: status.append(resp.http_response.status_code))
    assert status == [200]


def test_list_services_by_resource_group(client: ApiManagementClient) -> None:
    rg = unique("rg")
    names = sorted(unique("sdk") for _ in range(3))
    for name in names:
        _new_service(client, rg, name)
    listed = list(client.api_management_service.list_by_resource_group(rg))
    assert sorted(s.name for s in listed) == names
    assert all(s.provisioning_state == "Succeeded" for s in listed)


def test_delete_service_with_the_poller_and_again(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    statuses: list[int] = []

    def record(response: Any) -> None:
        statuses.append(response.http_response.status_code)

    client.api_management_service.begin_delete(rg, name, polling_interval=0, raw_response_hook=record).result(30)
    with pytest.raises(ResourceNotFoundError) as caught:
        client.api_management_service.get(rg, name)
    assert caught.value.error is not None
    assert caught.value.error.code == "ResourceNotFound"
    # Deleting what is gone is not an error in Resource Manager: 204.
    client.api_management_service.begin_delete(rg, name, polling_interval=0, raw_response_hook=record).result(30)
    assert statuses == [200, 204]


def test_list_by_service_names_both_configurations(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    listed = list(client.tenant_access.list_by_service(rg, name))
    assert sorted(a.name for a in listed) == ["access", "gitAccess"]
    for item in listed:
        assert item.type == "Microsoft.ApiManagement/service/tenant"
        assert item.id.endswith(f"/service/{name}/tenant/{item.name}")
    # $filter is "Not used" in the specification: accepted and ignored.
    assert len(list(client.tenant_access.list_by_service(rg, name, filter="name eq 'access'"))) == 2


def test_get_never_carries_keys(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    secrets = _secrets(client, rg, name)
    for access in ("access", "gitAccess"):
        raw = client.tenant_access.get(rg, name, access, cls=lambda resp, _b, _h: resp.http_response.json())
        text = repr(raw)
        assert "primaryKey" not in text
        assert "secondaryKey" not in text
        assert secrets.primary_key not in text
        assert secrets.secondary_key not in text
        contract = client.tenant_access.get(rg, name, access)
        assert contract.name == access
        assert contract.additional_properties == {}
    assert client.tenant_access.get(rg, name, "access").enabled is False  # Azure's default for a new service
    assert client.tenant_access.get(rg, name, "gitAccess").principal_id == "git"


def test_get_entity_tag_matches_get(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    assert client.tenant_access.get_entity_tag(rg, name, "access") is True
    head_etag = client.tenant_access.get_entity_tag(rg, name, "access", cls=lambda _r, _b, headers: headers["ETag"])
    assert head_etag == _etag_of(client, rg, name)
    assert head_etag.startswith('"')
    assert head_etag.endswith('"')


def test_create_with_if_match_star_sets_the_fields(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    key_a, key_b = "A" * 40 + "primary", "B" * 40 + "secondary"
    result = client.tenant_access.create(
        rg, name, "access", "*",
        AccessInformationCreateParameters(
            enabled=True, principal_id="automation", primary_key=key_a, secondary_key=key_b
        ),
    )
    assert result.enabled is True
    assert result.principal_id == "automation"
    secrets = _secrets(client, rg, name)
    assert (secrets.primary_key, secrets.secondary_key) == (key_a, key_b)
    assert secrets.principal_id == "automation"
    assert secrets.enabled is True


def test_update_with_the_current_etag(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    etag = _etag_of(client, rg, name)
    result = client.tenant_access.update(rg, name, "access", etag, AccessInformationUpdateParameters(enabled=True))
    assert result.enabled is True
    assert client.tenant_access.get(rg, name, "access").enabled is True
    assert _etag_of(client, rg, name) != etag


def test_update_with_a_stale_etag_raises_precondition_failed(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    stale = _etag_of(client, rg, name)
    client.tenant_access.update(rg, name, "access", stale, AccessInformationUpdateParameters(enabled=True))
    with pytest.raises(HttpResponseError) as caught:
        client.tenant_access.update(rg, name, "access", stale, AccessInformationUpdateParameters(enabled=False))
    assert caught.value.status_code == 412
    assert caught.value.error is not None
    assert caught.value.error.code == "PreconditionFailed"
    assert client.tenant_access.get(rg, name, "access").enabled is True
    with pytest.raises(HttpResponseError) as caught:
        client.tenant_access.create(rg, name, "access", stale, AccessInformationCreateParameters(enabled=False))
    assert caught.value.status_code == 412


def test_update_without_if_match_is_a_validation_error(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    with pytest.raises(HttpResponseError) as caught:
        client.tenant_access.update(rg, name, "access", "", AccessInformationUpdateParameters(enabled=True))
    assert caught.value.status_code == 400
    assert caught.value.error is not None
    assert caught.value.error.code == "ValidationError"


@pytest.mark.parametrize("access", ["access", "gitAccess"])
def test_regenerate_secondary_key_changes_only_the_secondary(
    client: Client, sdk_service: Svc, access: str
) -> None:
    rg, name = sdk_service
    before = _secrets(client, rg, name, access)
    etag = _etag_of(client, rg, name, access)
    assert client.tenant_access.regenerate_secondary_key(rg, name, access) is None
    after = _secrets(client, rg, name, access)
    assert after.secondary_key != before.secondary_key
    assert after.primary_key == before.primary_key
    assert len(after.secondary_key) == 88
    assert _etag_of(client, rg, name, access) != etag


@pytest.mark.parametrize("access", ["access", "gitAccess"])
def test_regenerate_primary_key_changes_only_the_primary(
    client: Client, sdk_service: Svc, access: str
) -> None:
    rg, name = sdk_service
    before = _secrets(client, rg, name, access)
    assert client.tenant_access.regenerate_primary_key(rg, name, access) is None
    after = _secrets(client, rg, name, access)
    assert after.primary_key != before.primary_key
    assert after.secondary_key == before.secondary_key


def test_git_regenerate_operations_rotate_the_git_keys(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    access_before = _secrets(client, rg, name, "access")
    git_before = _secrets(client, rg, name, "gitAccess")
    assert client.tenant_access_git.regenerate_primary_key(rg, name, "gitAccess") is None
    git_mid = _secrets(client, rg, name, "gitAccess")
    assert git_mid.primary_key != git_before.primary_key
    assert git_mid.secondary_key == git_before.secondary_key
    assert client.tenant_access_git.regenerate_secondary_key(rg, name, "gitAccess") is None
    git_after = _secrets(client, rg, name, "gitAccess")
    assert git_after.secondary_key != git_mid.secondary_key
    assert git_after.primary_key == git_mid.primary_key
    # The Git operations act on gitAccess whatever the path names (Azure's own SDK tests call them with "access").
    client.tenant_access_git.regenerate_secondary_key(rg, name, "access")
    assert _secrets(client, rg, name, "access") == access_before


def test_list_secrets_carries_both_keys_and_the_identifier(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    secrets = _secrets(client, rg, name)
    assert secrets.id == secrets.principal_id == "integration"
    assert secrets.primary_key != secrets.secondary_key
    assert secrets.enabled is False
    etag = client.tenant_access.list_secrets(rg, name, "access", cls=lambda _r, _b, headers: headers["ETag"])
    assert etag == _etag_of(client, rg, name)


@pytest.mark.parametrize("call", [
    "get", "get_entity_tag", "list_secrets", "regenerate_primary_key", "regenerate_secondary_key", "list_by_service",
])
def test_a_missing_service_raises_resource_not_found(client: ApiManagementClient, call: str) -> None:
    rg, name = unique("rg"), unique("missing")
    def run() -> object:
        if call == "list_by_service":
            return list(client.tenant_access.list_by_service(rg, name))
        return getattr(client.tenant_access, call)(rg, name, "access")

    with pytest.raises(ResourceNotFoundError) as caught:
        run()
    assert caught.value.status_code == 404
    if call != "get_entity_tag":  # a HEAD answer has no body to carry the code
        assert caught.value.error is not None
        assert caught.value.error.code == "ResourceNotFound"


def test_a_missing_service_raises_for_git_and_updates(client: ApiManagementClient) -> None:
    rg, name = unique("rg"), unique("missing")
    for call in (
        lambda: client.tenant_access_git.regenerate_primary_key(rg, name, "gitAccess"),
        lambda: client.tenant_access_git.regenerate_secondary_key(rg, name, "gitAccess"),
        lambda: client.tenant_access.update(rg, name, "access", "*", AccessInformationUpdateParameters(enabled=True)),
        lambda: client.tenant_access.create(rg, name, "access", "*", AccessInformationCreateParameters(enabled=True)),
        lambda: client.api_management_service.get(rg, name),
    ):
        with pytest.raises(ResourceNotFoundError):
            call()


def test_an_unknown_access_name_is_a_validation_error(client: Client, sdk_service: Svc) -> None:
    rg, name = sdk_service
    with pytest.raises(HttpResponseError) as caught:
        client.tenant_access.get(rg, name, "configuration")
    assert caught.value.status_code == 400
    assert caught.value.error is not None
    assert caught.value.error.code == "ValidationError"
    assert caught.value.error.details
    assert caught.value.error.details[0].target == "path.accessName"


def test_an_older_api_version_works_and_an_unknown_one_is_refused(
    azure_server: Any, cert: Any, credential: Any, sdk_service: tuple[str, str]
) -> None:
    rg, name = sdk_service
    with ApiManagementClient(credential, SUBSCRIPTION, base_url=azure_server.url, connection_verify=str(cert),
                             api_version="2022-08-01") as older:
        older.tenant_access.regenerate_secondary_key(rg, name, "access")
        assert older.tenant_access.list_secrets(rg, name, "access").enabled is False
    with ApiManagementClient(credential, SUBSCRIPTION, base_url=azure_server.url, connection_verify=str(cert),
                             api_version="2015-01-01") as unknown, pytest.raises(HttpResponseError) as caught:
        unknown.tenant_access.get(rg, name, "access")
    assert caught.value.status_code == 400
    assert caught.value.error is not None
    assert caught.value.error.code == "InvalidApiVersionParameter"


def test_azure_identity_signs_in_at_the_server_and_the_sdk_uses_the_token(
    azure_server: ServerProcess, cert: Path
) -> None:
    """The whole Azure chain, unmodified: azure-identity's ClientSecretCredential gets a token from
    this server's token endpoint, and the SDK sends it with every call."""
    created = subprocess.run(
        [sys.executable, "-m", "tenant_access", "principals", "create", "--data-dir", str(azure_server.data_dir),
         "--role", "owner", "--scope", f"/subscriptions/{SUBSCRIPTION}"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines() if ":" in line)
    credential = ClientSecretCredential(
        tenant_id="local", client_id=fields["client id"].strip(), client_secret=fields["client secret"].strip(),
        authority=azure_server.url, disable_instance_discovery=True, connection_verify=str(cert),
    )
    rg, name = unique("rg"), unique("idp")
    with credential, ApiManagementClient(credential, SUBSCRIPTION, base_url=azure_server.url,
                                         connection_verify=str(cert)) as client:
        _new_service(client, rg, name)
        before = _secrets(client, rg, name)
        client.tenant_access.regenerate_secondary_key(rg, name, "access")
        after = _secrets(client, rg, name)
    assert after.secondary_key != before.secondary_key
    assert after.primary_key == before.primary_key

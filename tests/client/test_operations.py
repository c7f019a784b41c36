"""Every client operation against a real server, in-process and over TCP, in each wire style."""

from __future__ import annotations

import datetime as dt

import pytest

from tenant_access.client import (
    AccessConfiguration,
    AccessRef,
    Client,
    NotFound,
    Secrets,
    ServiceRef,
    UnexpectedResponse,
)
from tests.client.conftest import SERVICE_FIELDS, ClientFactory, new_service_ref


def test_the_style_is_detected_from_the_answers(client: Client, service: ServiceRef, style: str) -> None:
    assert client.api_style == "auto"
    assert client.detected_style == style


def test_a_named_style_is_used_and_a_wrong_one_is_refused(make_client: ClientFactory, style: str) -> None:
    ref = new_service_ref()
    right = make_client(api_style=style)
    assert right.create_or_update_service(ref, **SERVICE_FIELDS).name == ref.service_name
    wrong = make_client(api_style="azure" if style == "seed" else "seed")
    with pytest.raises(UnexpectedResponse):
        wrong.get_service(ref)


def test_services_are_created_read_listed_updated_and_deleted(client: Client) -> None:
    ref = new_service_ref()
    created = client.create_or_update_service(ref, **SERVICE_FIELDS, tags={"team": "ops"})
    assert created.name == ref.service_name
    assert (created.subscription_id, created.resource_group) == (ref.subscription_id, ref.resource_group)
    assert created.ref == ref
    assert (created.location, created.sku_name, created.sku_capacity) == ("West Europe", "Developer", 1)
    assert (created.publisher_email, created.publisher_name) == ("ops@example.com", "Ops")
    assert created.tags == {"team": "ops"}
    assert created.provisioning_state == "Succeeded"
    assert created.created_at is not None
    assert created.id.endswith(f"/service/{ref.service_name}")

    updated = client.create_or_update_service(ref, **{**SERVICE_FIELDS, "publisher_name": "Platform"})
    assert updated.publisher_name == "Platform"
    assert client.get_service(ref).publisher_name == "Platform"
    assert ref.service_name in {s.name for s in client.list_services(ref.subscription_id, ref.resource_group)}

    assert client.delete_service(ref) is True
    with pytest.raises(NotFound):
        client.get_service(ref)
    assert client.delete_service(ref) is False


def test_both_configurations_are_listed(client: Client, service: ServiceRef) -> None:
    found = {c.name: c for c in client.list_access(service)}
    assert set(found) == {"access", "gitAccess"}
    assert all(isinstance(c, AccessConfiguration) for c in found.values())
    assert found["access"].enabled is False
    assert found["gitAccess"].principal_id == "git"


def test_get_access_carries_the_etag_head_returns(client: Client, service: ServiceRef, style: str) -> None:
    config = client.get_access(service.access())
    assert config.name == "access"
    assert config.principal_id == "integration"
    assert config.enabled is False
    assert config.etag
    assert '"' not in config.etag
    assert client.get_etag(service.access()) == config.etag
    if style == "seed":
        assert config.primary_key_version_id and config.secondary_key_version_id
    else:
        assert config.primary_key_version_id is None


def test_enable_and_disable_change_the_etag(client: Client, service: ServiceRef) -> None:
    target = service.access()
    before = client.get_access(target)
    enabled = client.enable(target, if_match=before.etag or "*")
    assert enabled.enabled is True
    assert enabled.etag and enabled.etag != before.etag
    assert client.get_access(target).enabled is True
    disabled = client.disable(target)
    assert disabled.enabled is False
    assert client.update_access(target, enabled=True).enabled is True


def test_an_old_api_version_patch_still_returns_the_configuration(make_client: ClientFactory) -> None:
    """Before 2020-12-01 Azure answers PATCH with 204 and no body; the client reads the result."""
    ref = new_service_ref()
    make_client().create_or_update_service(ref, **SERVICE_FIELDS)
    old = make_client(api_version="2019-12-01")
    config = old.enable(ref.access())
    assert config.enabled is True
    assert config.etag == old.get_etag(ref.access())


def test_replace_access_keeps_what_it_is_not_given(client: Client, service: ServiceRef) -> None:
    target = service.access()
    before = client.list_secrets(target)
    chosen = "k" * 40
    config = client.replace_access(target, principal_id="robot", primary_key=chosen)
    assert config.principal_id == "robot"
    assert config.enabled is False
    after = client.list_secrets(target)
    assert after.primary_key == chosen
    assert after.secondary_key == before.secondary_key
    assert after.principal_id == "robot"


def test_list_secrets_returns_both_keys_and_masks_them(client: Client, service: ServiceRef, style: str) -> None:
    secrets = client.list_secrets(service.access())
    assert isinstance(secrets, Secrets)
    assert secrets.name == "access"
    assert len(secrets.primary_key) == 88
    assert len(secrets.secondary_key) == 88
    assert secrets.primary_key != secrets.secondary_key
    assert secrets.etag == client.get_etag(service.access())
    for text in (repr(secrets), str(secrets), f"{secrets}", repr([secrets])):
        assert secrets.primary_key not in text
        assert secrets.secondary_key not in text
        assert "***" in text
    if style == "seed":
        assert secrets.version_id("primary") == secrets.primary_key_version_id


@pytest.mark.parametrize(("method", "access_name", "slot"), [
    ("regenerate_primary_key", "access", "primary"),
    ("regenerate_secondary_key", "access", "secondary"),
    ("regenerate_git_primary_key", "gitAccess", "primary"),
    ("regenerate_git_secondary_key", "gitAccess", "secondary"),
])
def test_each_regeneration_changes_exactly_one_key(
    client: Client, service: ServiceRef, style: str, method: str, access_name: str, slot: str,
) -> None:
    target = service.access(access_name)
    other_target = service.access("access" if access_name == "gitAccess" else "gitAccess")
    before, other_before = client.list_secrets(target), client.list_secrets(other_target)
    version = getattr(client, method)(service.access())  # git routes act on gitAccess whatever the path says
    after, other_after = client.list_secrets(target), client.list_secrets(other_target)

    assert version.slot == slot
    assert version.access_name == access_name
    other = "secondary" if slot == "primary" else "primary"
    assert after.key(slot) != before.key(slot)  # type: ignore[arg-type]
    assert after.key(other) == before.key(other)  # type: ignore[arg-type]
    assert (other_after.primary_key, other_after.secondary_key) == (other_before.primary_key,
                                                                     other_before.secondary_key)
    assert after.etag != before.etag
    if style == "seed":
        assert version.id == after.version_id(slot)  # type: ignore[arg-type]
        assert version.previous_id == before.version_id(slot)  # type: ignore[arg-type]
        assert version.etag == after.etag
        assert version.created_at is not None
    else:
        assert (version.id, version.created_at, version.previous_id, version.etag) == (None, None, None, None)


def test_audit_events_name_the_versions_a_rotation_touched(client: Client, service: ServiceRef, style: str) -> None:
    target = service.access()
    before = client.list_secrets(target)
    version = client.regenerate_secondary_key(target)
    started = dt.datetime.now(dt.UTC)
    client.enable(target)

    rotations = client.list_audit_events(service, operation="access.regenerate_secondary_key")
    assert len(rotations) == 1
    event = rotations[0]
    assert event.outcome == "success"
    assert event.status in (200, 204)
    assert event.target == f"{target_path(target)}"
    assert event.request_id
    assert event.id
    assert event.time is not None and event.time <= started
    assert event.new_version_id and event.old_version_id
    if style == "seed":
        assert (event.old_version_id, event.new_version_id) == (before.secondary_key_version_id, version.id)

    everything = client.list_audit_events(service)
    assert [e.operation for e in everything] == [
        "services.create_or_update", "access.list_secrets", "access.regenerate_secondary_key", "access.update"]
    assert [e.id for e in client.list_audit_events(service, top=2)] == [e.id for e in everything[:2]]
    assert [e.operation for e in client.list_audit_events(service, since=started)] == ["access.update"]


def target_path(target: AccessRef) -> str:
    return (f"/subscriptions/{target.subscription_id}/resourceGroups/{target.resource_group}/providers"
            f"/Microsoft.ApiManagement/service/{target.service_name}/tenant/{target.access_name}")

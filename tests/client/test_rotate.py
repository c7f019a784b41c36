"""The rotate helper against real servers: keys really change, in the documented order."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenant_access.client import Client, KeySlot, NewKey, Secrets, ServiceRef, rotate, rotate_async
from tests.client.conftest import SERVICE_FIELDS, STYLES, inproc_async_client, new_service_ref


@pytest.mark.parametrize("in_use", ["primary", "secondary"])
@pytest.mark.parametrize("access_name", ["access", "gitAccess"])
def test_rotate_hands_over_the_standby_key_then_replaces_the_old_one(
    client: Client, service: ServiceRef, style: str, in_use: KeySlot, access_name: str,
) -> None:
    target = service.access(access_name)
    standby: KeySlot = "secondary" if in_use == "primary" else "primary"
    before = client.list_secrets(target)
    handed: list[tuple[NewKey, Secrets]] = []

    def on_new_key(new: NewKey) -> None:
        # What the server holds while clients are being moved: the new standby key, the old key in use.
        handed.append((new, client.list_secrets(target)))

    result = rotate(client, target, on_new_key=on_new_key, in_use=in_use)
    after = client.list_secrets(target)

    [(new, during)] = handed
    assert (new.target, new.slot) == (target, standby)
    assert new.key == during.key(standby)
    assert new.key != before.key(standby)
    assert during.key(in_use) == before.key(in_use)  # the key in use survived until the callback returned
    assert new.principal_id == before.principal_id
    assert new.key not in repr(new)

    assert after.key(standby) == new.key  # what clients moved to is still valid
    assert after.key(in_use) != before.key(in_use)  # the key they left is gone
    assert result.in_use == standby
    assert result.target == target
    if style == "seed":
        assert result.in_use_version_id == new.version_id == after.version_id(standby)
        assert result.standby_version_id == after.version_id(in_use)
        assert result.standby_version_id != before.version_id(in_use)
    else:
        assert (result.in_use_version_id, result.standby_version_id) == (None, None)


def test_a_failing_callback_stops_before_the_key_in_use_is_regenerated(client: Client, service: ServiceRef) -> None:
    target = service.access()
    before = client.list_secrets(target)

    def on_new_key(new: NewKey) -> None:
        raise RuntimeError("could not update the vault")

    with pytest.raises(RuntimeError, match="vault") as caught:
        rotate(client, target, on_new_key=on_new_key)
    assert any("primary key was NOT regenerated" in note for note in caught.value.__notes__)
    after = client.list_secrets(target)
    assert after.primary_key == before.primary_key
    assert after.secondary_key != before.secondary_key

    # Resuming as documented: the new key is now the one in use.
    result = rotate(client, target, on_new_key=lambda new: None, in_use="secondary")
    assert result.in_use == "primary"
    assert client.list_secrets(target).primary_key != before.primary_key


def test_in_use_must_name_a_key(client: Client, service: ServiceRef) -> None:
    with pytest.raises(ValueError, match="in_use"):
        rotate(client, service.access(), on_new_key=print, in_use="tertiary")  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize("style", STYLES)
async def test_rotate_async_awaits_an_async_callback(tmp_path: Path, style: str) -> None:
    ref = new_service_ref()
    async with inproc_async_client(tmp_path, style) as client:
        await client.create_or_update_service(ref, **SERVICE_FIELDS)
        target = ref.access()
        before = await client.list_secrets(target)
        received: list[str] = []

        async def on_new_key(new: NewKey) -> None:
            received.append(new.key)
            assert (await client.list_secrets(target)).primary_key == before.primary_key

        result = await rotate_async(client, target, on_new_key=on_new_key)
        after = await client.list_secrets(target)
    assert received == [after.secondary_key]
    assert after.secondary_key != before.secondary_key
    assert after.primary_key != before.primary_key
    assert result.in_use == "secondary"


@pytest.mark.anyio
async def test_rotate_async_takes_a_sync_callback_and_stops_when_it_fails(tmp_path: Path) -> None:
    ref = new_service_ref()
    async with inproc_async_client(tmp_path, "seed") as client:
        await client.create_or_update_service(ref, **SERVICE_FIELDS)
        before = await client.list_secrets(ref.access())

        def on_new_key(new: NewKey) -> None:
            raise KeyError(new.slot)

        with pytest.raises(KeyError):
            await rotate_async(client, ref.access(), on_new_key=on_new_key, in_use="secondary")
        after = await client.list_secrets(ref.access())
    assert after.secondary_key == before.secondary_key
    assert after.primary_key != before.primary_key

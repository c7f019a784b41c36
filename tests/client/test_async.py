"""AsyncClient: the same operations, in-process through httpx.ASGITransport and over TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tenant_access.client import AsyncClient, NotFound, PreconditionFailed, ValidationError
from tests.client.conftest import SERVICE_FIELDS, STYLES, bearer_for, inproc_async_client, new_service_ref
from tests.serverproc import ServerProcess

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _client(where: str, style: str, tmp_path: Path, request: pytest.FixtureRequest,
                  **options: Any) -> AsyncIterator[AsyncClient]:
    if where == "inproc":
        async with inproc_async_client(tmp_path, style, **options) as client:
            yield client
    else:
        server: ServerProcess = request.getfixturevalue("seed_server" if style == "seed" else "azure_server")
        options.setdefault("credential", bearer_for(server.data_dir, issuer=server.issuer))
        async with AsyncClient(endpoint=server.url, **options) as client:
            yield client


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("where", ["inproc", "live"])
async def test_every_operation(where: str, style: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    ref = new_service_ref()
    target = ref.access()
    async with _client(where, style, tmp_path, request) as client:
        created = await client.create_or_update_service(ref, **SERVICE_FIELDS)
        assert created.name == ref.service_name
        assert client.detected_style == style
        assert (await client.get_service(ref)).location == "West Europe"
        assert ref.service_name in {s.name for s in await client.list_services(ref.subscription_id,
                                                                                ref.resource_group)}
        assert {c.name for c in await client.list_access(ref)} == {"access", "gitAccess"}

        config = await client.get_access(target)
        assert config.etag == await client.get_etag(target)
        enabled = await client.enable(target, if_match=config.etag or "*")
        assert enabled.enabled is True
        with pytest.raises(PreconditionFailed):
            await client.disable(target, if_match=config.etag or "*")
        assert (await client.disable(target)).enabled is False
        assert (await client.update_access(target, enabled=True)).enabled is True
        assert (await client.replace_access(target, principal_id="robot")).principal_id == "robot"

        before = await client.list_secrets(target)
        await client.regenerate_primary_key(target)
        await client.regenerate_secondary_key(target)
        after = await client.list_secrets(target)
        assert before.primary_key != after.primary_key
        assert before.secondary_key != after.secondary_key

        git_before = await client.list_secrets(ref.access("gitAccess"))
        assert (await client.regenerate_git_primary_key(target)).access_name == "gitAccess"
        assert (await client.regenerate_git_secondary_key(target)).slot == "secondary"
        git_after = await client.list_secrets(ref.access("gitAccess"))
        assert git_before.primary_key != git_after.primary_key
        assert git_before.secondary_key != git_after.secondary_key
        assert (await client.list_secrets(target)).primary_key == after.primary_key

        assert isinstance(await client.list_audit_events(ref), list)
        assert await client.delete_service(ref) is True
        with pytest.raises(NotFound):
            await client.get_service(ref)
        assert await client.delete_service(ref) is False


@pytest.mark.parametrize("style", STYLES)
async def test_errors_map_the_same_way(style: str, tmp_path: Path) -> None:
    async with inproc_async_client(tmp_path, style, api_version="not-a-version") as client:
        with pytest.raises(ValidationError) as caught:
            await client.get_service(new_service_ref())
    assert caught.value.request_id
    assert "query.api-version" in {d.field for d in caught.value.details}

"""The SDK's asyncio client (``azure.mgmt.apimanagement.aio``, aiohttp transport) against the server.

The async stack has its own transport and its own certificate handling, so it is proven
separately: the seed operation, its effect, and an error mapped to the right exception.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.apimanagement.aio import ApiManagementClient
from azure.mgmt.apimanagement.models import (
    AccessInformationUpdateParameters,
    ApiManagementServiceResource,
    ApiManagementServiceSkuProperties,
)

from tests.compat.conftest import SUBSCRIPTION, AsyncStaticCredential, unique
from tests.serverproc import ServerProcess


def test_async_client_regenerates_the_secondary_key(
    azure_server: ServerProcess, cert: Path, async_credential: AsyncStaticCredential
) -> None:
    rg, name = unique("rg"), unique("aio")

    async def scenario() -> None:
        async with ApiManagementClient(async_credential, SUBSCRIPTION, base_url=azure_server.url,
                                       connection_verify=str(cert)) as client:
            poller = await client.api_management_service.begin_create_or_update(
                rg, name,
                ApiManagementServiceResource(
                    location="North Europe", sku=ApiManagementServiceSkuProperties(name="Basic", capacity=1),
                    publisher_email="ops@example.com", publisher_name="Ops",
                ),
                polling_interval=0,
            )
            created = await poller.result()
            assert created.provisioning_state == "Succeeded"

            before = await client.tenant_access.list_secrets(rg, name, "access")
            assert await client.tenant_access.regenerate_secondary_key(rg, name, "access") is None
            after = await client.tenant_access.list_secrets(rg, name, "access")
            assert after.secondary_key != before.secondary_key
            assert after.primary_key == before.primary_key

            names = [item.name async for item in client.tenant_access.list_by_service(rg, name)]
            assert sorted(names) == ["access", "gitAccess"]

            with pytest.raises(HttpResponseError) as caught:
                await client.tenant_access.update(rg, name, "access", '"stale"',
                                                  AccessInformationUpdateParameters(enabled=True))
            assert caught.value.error is not None
            assert caught.value.error.code == "PreconditionFailed"

            with pytest.raises(ResourceNotFoundError):
                await client.tenant_access.regenerate_secondary_key(rg, unique("missing"), "access")

            delete = await client.api_management_service.begin_delete(rg, name, polling_interval=0)
            await delete.result()

    asyncio.run(scenario())

"""Resource Manager's basics, in Azure mode: what clients ask before they reach a resource.

The Azure CLI registers a custom cloud by reading ``/metadata/endpoints``, signs in, lists the
subscriptions it may use (``az login`` fails without one) and the tenants, and ``az apim list``
without a resource group lists a whole subscription. The shapes follow Resource Manager's
``subscriptions.json`` (api-version 2022-12-01) and its cloud metadata document; only what clients
read is filled in with facts of this server, the rest with Azure's defaults for a new subscription.
"""

from __future__ import annotations

from typing import Any

from tenant_access.domain import api_versions
from tenant_access.domain.errors import NotFound
from tenant_access.domain.subscriptions import TENANT_ID, TENANT_NAME, Subscription
from tenant_access.http.context import Context, Outcome

#: The audience the cloud metadata announces first: clients ask for tokens for it
#: (``<audience>/.default``). It is one the server's token verification accepts by default.
AUDIENCES = ("https://management.core.windows.net/", "https://management.azure.com/")
#: Before this api-version the metadata document had its older, flat shape.
NAMED_CLOUD_FROM = "2019-05-01"
CLOUD_NAME = "tenant-access"


def base_url(ctx: Context) -> str:
    """This server's public URL with a trailing slash, as ARM writes it. Never built from the Host
    header: the document is public and cacheable, and a shared cache in front of the server must not
    be able to keep one that sends clients' sign-ins to another host."""
    from tenant_access.http.wire_azure import origin

    return (ctx.public_url or origin(ctx.request)) + "/"


def cloud_metadata(base: str, version: str | None) -> dict[str, Any]:
    """One cloud: this server is its resource manager and its login endpoint.

    A single object for every api-version: it is what ``az cloud register`` reads (and what Azure
    Stack Hub answers); Azure's public endpoint answers 2019-05-01 and later with an array of all
    of Azure's clouds, which ``az cloud register`` could not read.
    """
    # Without the trailing slash: the CLI appends "/<tenant>/..." to the login endpoint as it is.
    authentication = {"loginEndpoint": base.rstrip("/"), "audiences": list(AUDIENCES), "tenant": TENANT_ID,
                      "identityProvider": "AAD"}
    if version is not None and version[:10] < NAMED_CLOUD_FROM:
        return {"galleryEndpoint": base, "graphEndpoint": base, "portalEndpoint": base,
                "authentication": authentication}
    return {
        "name": CLOUD_NAME,
        "portal": base,
        "resourceManager": base,
        "authentication": authentication,
        "graph": base,
        "graphAudience": base,
        "media": base,
        "batch": base,
        "gallery": base,
        "sqlManagement": base,
        "suffixes": {"storage": "core.windows.net", "keyVaultDns": "vault.azure.net",
                     "acrLoginServer": "azurecr.io", "sqlServerHostname": "database.windows.net",
                     "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
                     "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net"},
    }


def subscription_body(sub: Subscription) -> dict[str, Any]:
    """``Subscription`` (subscriptions.json 2022-12-01), as Azure reports an enabled pay-as-you-go one."""
    return {
        "id": sub.resource_id,
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": sub.id,
        "tenantId": TENANT_ID,
        "displayName": sub.display_name,
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01",
                                 "spendingLimit": "Off"},
    }


def tenant_body() -> dict[str, Any]:
    """``TenantIdDescription`` (subscriptions.json 2022-12-01)."""
    return {"id": f"/tenants/{TENANT_ID}", "tenantId": TENANT_ID, "tenantCategory": "Home",
            "displayName": TENANT_NAME, "domains": [], "tenantType": "AAD"}


def _listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"value": items, "count": {"type": "Total", "value": len(items)}}


async def _visible(ctx: Context) -> list[Subscription]:
    return await ctx.app.list_subscriptions(ctx.actor.scope)


async def metadata_endpoints(ctx: Context) -> Outcome:
    """Public, as Azure's is: clients read it before they have a credential. ``api-version`` is
    optional here (the newest shape without one); a malformed one is refused."""
    raw = ctx.request.query("api-version")
    version = None if raw is None else api_versions.well_formed(raw)
    return Outcome("document", cloud_metadata(base_url(ctx), version))


async def list_subscriptions(ctx: Context) -> Outcome:
    api_versions.well_formed(ctx.request.query("api-version"))
    return Outcome("document", _listing([subscription_body(s) for s in await _visible(ctx)]))


async def get_subscription(ctx: Context) -> Outcome:
    api_versions.well_formed(ctx.request.query("api-version"))
    wanted = ctx.params["subscriptionId"].lower()
    for sub in await _visible(ctx):
        if sub.id.lower() == wanted:
            return Outcome("document", subscription_body(sub))
    raise NotFound(f"The subscription '{ctx.params['subscriptionId'][:64]}' could not be found.",
                   azure_code="SubscriptionNotFound")


async def list_tenants(ctx: Context) -> Outcome:
    api_versions.well_formed(ctx.request.query("api-version"))
    return Outcome("document", _listing([tenant_body()]))


def resource_group_body(subscription_id: str, name: str, location: str) -> dict[str, Any]:
    """``ResourceGroup`` (resources.json): what ``az apim create`` reads for its default location."""
    return {"id": f"/subscriptions/{subscription_id}/resourceGroups/{name}", "name": name,
            "type": "Microsoft.Resources/resourceGroups", "location": location,
            "properties": {"provisioningState": "Succeeded"}}


async def get_resource_group(ctx: Context) -> Outcome:
    """A resource group exists here while it holds a service (groups are not created on their own:
    a service may be created in any group); its location is that of its oldest service."""
    api_versions.well_formed(ctx.request.query("api-version"))
    sub, name = ctx.params["subscriptionId"], ctx.params["resourceGroupName"]
    held = await ctx.app.list_services(sub, name)
    if not held:
        raise NotFound(f"Resource group '{name[:90]}' could not be found.", azure_code="ResourceGroupNotFound")
    oldest = min(held, key=lambda s: s.created_at)
    return Outcome("document", resource_group_body(oldest.ref.subscription_id, oldest.ref.resource_group,
                                                   oldest.location))

"""One function per operation: parse and check the request, call the use case, tag the result.

The table at the bottom is the single list of everything the server serves; the OpenAPI
documents and the authorization tests are generated from it, so a route cannot exist unlisted.
"""

from __future__ import annotations

from tenant_access.domain import rules
from tenant_access.domain.errors import Problems
from tenant_access.domain.models import AccessName, KeySlot, ServiceRef
from tenant_access.http.context import Context, Outcome
from tenant_access.http.routing import Route

PROVIDER = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ApiManagement"
SERVICE = PROVIDER + "/service/{serviceName}"
ACCESS = SERVICE + "/tenant/{accessName}"


def _service_ref(ctx: Context) -> ServiceRef:
    p = ctx.params
    return ServiceRef(p["subscriptionId"], p["resourceGroupName"], p["serviceName"])


def _access_target(ctx: Context) -> tuple[ServiceRef, AccessName]:
    return _service_ref(ctx), AccessName(ctx.params["accessName"])


async def put_service(ctx: Context) -> Outcome:
    problems = Problems()
    ref = _service_ref(ctx)
    spec = rules.parse_service_spec(await ctx.request.json(required=True), problems)
    problems.raise_if_any()
    assert spec is not None
    plan = await ctx.app.put_service(ref, spec)
    return Outcome("service", plan.service, created=plan.created)


async def get_service(ctx: Context) -> Outcome:
    ref = _service_ref(ctx)
    return Outcome("service", await ctx.app.get_service(ref))


async def delete_service(ctx: Context) -> Outcome:
    ref = _service_ref(ctx)
    return Outcome("service_deleted", (ref, await ctx.app.delete_service(ref)))


async def list_services(ctx: Context) -> Outcome:
    found = await ctx.app.list_services(ctx.params["subscriptionId"], ctx.params["resourceGroupName"])
    return Outcome("service_list", found)


async def list_access(ctx: Context) -> Outcome:
    ref = _service_ref(ctx)
    return Outcome("access_list", await ctx.app.list_access(ref))


async def get_access(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    return Outcome("access", await ctx.app.get_access(ref, name))


async def head_access(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    return Outcome("access_etag", await ctx.app.get_access(ref, name))


async def put_access(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    problems = Problems()
    fields = rules.parse_access_create(await ctx.request.json(required=True), problems)
    problems.raise_if_any()
    config = await ctx.app.replace_access(ref, name, ctx.request.headers.get("if-match"), fields)
    return Outcome("access", config)


async def patch_access(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    problems = Problems()
    fields = rules.parse_access_update(await ctx.request.json(required=True), problems)
    problems.raise_if_any()
    config = await ctx.app.update_access(ref, name, ctx.request.headers.get("if-match"), fields)
    return Outcome("access", config)


async def list_secrets(ctx: Context) -> Outcome:
    ref, name = _access_target(ctx)
    await ctx.request.json(required=False)
    return Outcome("secrets", await ctx.app.list_secrets(ref, name))


async def _regenerate(ctx: Context, name: AccessName | None, slot: KeySlot) -> Outcome:
    ref, path_name = _access_target(ctx)
    await ctx.request.json(required=False)  # no body is expected; a malformed one is still refused
    return Outcome("rotation", await ctx.app.regenerate_key(ref, name or path_name, slot))


async def regenerate_primary_key(ctx: Context) -> Outcome:
    return await _regenerate(ctx, None, KeySlot.PRIMARY)


async def regenerate_secondary_key(ctx: Context) -> Outcome:
    return await _regenerate(ctx, None, KeySlot.SECONDARY)


async def git_regenerate_primary_key(ctx: Context) -> Outcome:
    return await _regenerate(ctx, AccessName.GIT, KeySlot.PRIMARY)


async def git_regenerate_secondary_key(ctx: Context) -> Outcome:
    return await _regenerate(ctx, AccessName.GIT, KeySlot.SECONDARY)


ROUTES: tuple[Route, ...] = (
    Route("services.list", "GET", PROVIDER + "/service", list_services,
          "List the services of a resource group"),
    Route("services.create_or_update", "PUT", SERVICE, put_service,
          "Create or update a service (creates both access configurations with fresh keys)",
          body="ServiceCreateOrUpdate"),
    Route("services.get", "GET", SERVICE, get_service, "Get a service"),
    Route("services.delete", "DELETE", SERVICE, delete_service, "Delete a service and all its keys"),
    Route("access.list", "GET", SERVICE + "/tenant", list_access, "List the access configurations of a service"),
    Route("access.get", "GET", ACCESS, get_access, "Get an access configuration (never its keys)"),
    Route("access.get_entity_tag", "HEAD", ACCESS, head_access, "Get the entity tag of an access configuration"),
    Route("access.create", "PUT", ACCESS, put_access,
          "Replace an access configuration (If-Match required)", body="AccessCreate"),
    Route("access.update", "PATCH", ACCESS, patch_access,
          "Enable or disable an access configuration (If-Match required)", body="AccessUpdate"),
    Route("access.list_secrets", "POST", ACCESS + "/listSecrets", list_secrets,
          "Return the primary and secondary keys"),
    Route("access.regenerate_primary_key", "POST", ACCESS + "/regeneratePrimaryKey", regenerate_primary_key,
          "Regenerate the primary key"),
    Route("access.regenerate_secondary_key", "POST", ACCESS + "/regenerateSecondaryKey", regenerate_secondary_key,
          "Regenerate the secondary key"),
    Route("access.git_regenerate_primary_key", "POST", ACCESS + "/git/regeneratePrimaryKey",
          git_regenerate_primary_key, "Regenerate the primary key of the gitAccess configuration"),
    Route("access.git_regenerate_secondary_key", "POST", ACCESS + "/git/regenerateSecondaryKey",
          git_regenerate_secondary_key, "Regenerate the secondary key of the gitAccess configuration"),
)

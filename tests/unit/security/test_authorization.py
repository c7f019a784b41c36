from __future__ import annotations

import itertools

import pytest

from tenant_access.security.authorization import (
    ALL_OPERATIONS,
    KEY_OPERATIONS,
    OWNER_OPERATIONS,
    READ_OPERATIONS,
    ROLE_OPERATIONS,
    Principal,
    PrincipalKind,
    Role,
    authorize,
    covers,
    normalize_scope,
    reaches,
    scope_segments,
)

SUB = "11111111-2222-3333-4444-555555555555"
SERVICE = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.ApiManagement/service/svc"
ACCESS = f"{SERVICE}/tenant/access"

#: Resource Manager's reads in Azure mode: every role may list what its scope reaches.
ARM_READS = ("services.list_by_subscription", "subscriptions.list", "subscriptions.get", "tenants.list",
             "resource_groups.get")
EXPECTED = {
    Role.READER: {*ARM_READS, "services.list", "services.get", "access.list", "access.get", "access.get_entity_tag",
                      "access.key_usage", "access.rotation_policy.get"},
    Role.KEY_OPERATOR: {
        *ARM_READS, "services.list", "services.get", "access.list", "access.get", "access.get_entity_tag",
        "access.key_usage", "access.rotation_policy.get",
        "access.list_secrets", "access.regenerate_primary_key", "access.regenerate_secondary_key",
        "access.git_regenerate_primary_key", "access.git_regenerate_secondary_key",
    },
    Role.OWNER: {
        *ARM_READS, "services.list", "services.get", "access.list", "access.get", "access.get_entity_tag",
        "access.key_usage", "access.rotation_policy.get",
        "access.list_secrets", "access.regenerate_primary_key", "access.regenerate_secondary_key",
        "access.git_regenerate_primary_key", "access.git_regenerate_secondary_key",
        "services.create_or_update", "services.delete", "access.create", "access.update", "audit.list",
        "access.rotation_policy.put", "access.rotation_policy.delete",
        "emulator.reset", "emulator.state", "emulator.seed", "emulator.faults.get", "emulator.faults.put",
        "emulator.faults.delete", "emulator.clock.get", "emulator.clock.set", "emulator.clock.advance",
        "emulator.clock.delete",
        "emulator.events", "emulator.sink.get", "emulator.sink.delete",
        "events.subscriptions.list", "events.subscriptions.create_or_update", "events.subscriptions.get",
        "events.subscriptions.delete", "events.subscriptions.deliveries",
    },
}


def principal(role: Role, scope: str = "/") -> Principal:
    return Principal("p", role, scope, PrincipalKind.BEARER)


def test_the_table_is_the_documented_matrix() -> None:
    assert {role: set(ops) for role, ops in ROLE_OPERATIONS.items()} == EXPECTED
    assert EXPECTED[Role.OWNER] == ALL_OPERATIONS
    assert READ_OPERATIONS < KEY_OPERATIONS | READ_OPERATIONS < ALL_OPERATIONS
    assert not (READ_OPERATIONS & KEY_OPERATIONS) and not (KEY_OPERATIONS & OWNER_OPERATIONS)


@pytest.mark.parametrize(("role", "operation"), list(itertools.product(Role, sorted(ALL_OPERATIONS))))
def test_role_matrix(role: Role, operation: str) -> None:
    assert authorize(principal(role), operation, ACCESS) is (operation in EXPECTED[role])


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("operation", ["", "meta.healthz", "access.delete", "ACCESS.GET", "access.get ", "*"])
def test_unknown_operations_are_refused_for_every_role(role: Role, operation: str) -> None:
    assert not authorize(principal(role), operation, ACCESS)


def test_every_routed_operation_is_classified() -> None:
    """An operation added to the router without a line in ROLE_OPERATIONS would be refused to
    everyone, owner included; this makes the omission a test failure instead of a surprise."""
    from tenant_access.http.handlers import AZURE_ROUTES, ROUTES

    routed = {route.operation for route in ROUTES + AZURE_ROUTES if route.versioned or not route.public}
    assert routed - ALL_OPERATIONS == set()


OTHER = "99999999-2222-3333-4444-555555555555"


@pytest.mark.parametrize(("scope", "path", "expected"), [
    ("/", "/subscriptions", True),
    (f"/subscriptions/{SUB}", "/subscriptions", True),  # the subscription lists (filtered by the handler)
    (f"/subscriptions/{SUB}/resourceGroups/rg1", f"/subscriptions/{SUB}", True),  # the group's subscription
    (f"/subscriptions/{SUB}", f"/subscriptions/{SUB}/resourceGroups/rg1", True),
    (SERVICE, f"/subscriptions/{SUB}", True),
    (f"/subscriptions/{SUB}", f"/subscriptions/{OTHER}", False),
    (f"/subscriptions/{SUB}/resourceGroups/rg1", f"/subscriptions/{SUB}/resourceGroups/rg2", False),
    (f"/subscriptions/{SUB}", f"/subscriptions/{SUB}/../{OTHER}", False),
    ("/subscription/a", "/", False),
])
def test_reaches_is_either_direction_on_one_line(scope: str, path: str, expected: bool) -> None:
    assert reaches(scope, path) is expected


def test_listings_above_the_scope_are_allowed_only_along_it() -> None:
    narrow = principal(Role.READER, f"/subscriptions/{SUB}/resourceGroups/rg1")
    below = f"/subscriptions/{SUB}/providers/Microsoft.ApiManagement/service"
    assert authorize(narrow, "subscriptions.list", "/subscriptions")
    assert authorize(narrow, "tenants.list", "/tenants")
    assert authorize(narrow, "subscriptions.get", f"/subscriptions/{SUB}")
    assert authorize(narrow, "services.list_by_subscription", below)
    assert not authorize(narrow, "subscriptions.get", f"/subscriptions/{OTHER}")
    assert not authorize(narrow, "services.list_by_subscription", below.replace(SUB, OTHER))
    # Only the listed operations get the relaxed rule: the group's list above its scope stays refused.
    assert not authorize(narrow, "services.list",
                         f"/subscriptions/{SUB}/resourceGroups/rg2/providers/Microsoft.ApiManagement/service")


@pytest.mark.parametrize(("scope", "path", "expected"), [
    ("/", ACCESS, True),
    ("/", "/", True),
    (f"/subscriptions/{SUB}", ACCESS, True),
    (f"/subscriptions/{SUB}", f"/subscriptions/{SUB}", True),
    (f"/subscriptions/{SUB}/", f"/subscriptions/{SUB}/", True),
    (f"/subscriptions/{SUB.upper()}", ACCESS, True),
    (f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG1", ACCESS, True),
    (f"/subscriptions/{SUB}/resourceGroups/rg1", ACCESS.replace("resourceGroups", "resourcegroups"), True),
    (SERVICE, ACCESS, True),
    (SERVICE, SERVICE, True),
    (SERVICE.lower(), ACCESS, True),
    # segment-wise, not string-prefix
    ("/subscriptions/a", "/subscriptions/ab", False),
    ("/subscriptions/a", "/subscriptions/ab/resourceGroups/x", False),
    (f"/subscriptions/{SUB}/resourceGroups/rg", ACCESS, False),
    (SERVICE, SERVICE + "2", False),
    (SERVICE[:-1], ACCESS, False),
    # broader paths than the scope
    (SERVICE, f"/subscriptions/{SUB}/resourceGroups/rg1", False),
    (SERVICE, f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.ApiManagement/service", False),
    (f"/subscriptions/{SUB}", "/", False),
    # other subscriptions / groups
    (f"/subscriptions/{SUB}", ACCESS.replace(SUB, "99999999-2222-3333-4444-555555555555"), False),
    # paths that something downstream might resolve differently
    ("/subscriptions/a", "/subscriptions/a/../b", False),
    ("/subscriptions/a", "/subscriptions/a/./resourceGroups/x", False),
    ("/subscriptions/a", "/subscriptions//a", False),
    ("/subscriptions/a", "//subscriptions/a", False),
    ("/subscriptions/a", "/subscriptions/a//resourceGroups/x", False),
    # an invalid scope covers nothing
    ("/subscription/a", "/subscription/a", False),
    ("", ACCESS, False),
])
def test_scope_prefix(scope: str, path: str, expected: bool) -> None:
    assert covers(scope, path) is expected


def test_covers_accepts_router_segments() -> None:
    segments = ["subscriptions", "a", "resourceGroups", "rg", ""]
    assert covers("/subscriptions/a", segments)
    # An encoded slash stays inside its segment: "a/b" is one subscription name, not two levels.
    assert not covers("/subscriptions/a", ["subscriptions", "a/b"])
    assert covers("/subscriptions/a", ("subscriptions", "A", "resourceGroups", "x"))
    assert not covers("/subscriptions/a", ["subscriptions", "a", "", "x"])


@pytest.mark.parametrize("scope", [
    "/", f"/subscriptions/{SUB}", f"/subscriptions/{SUB}/resourceGroups/rg1", SERVICE, SERVICE + "/",
    "/Subscriptions/a/ResourceGroups/b/Providers/microsoft.apimanagement/Service/c",
])
def test_valid_scopes(scope: str) -> None:
    segments = scope_segments(scope)
    assert all(s == s.lower() for s in segments)
    assert not normalize_scope(scope).endswith("/") or normalize_scope(scope) == "/"


@pytest.mark.parametrize("scope", [
    "", "subscriptions/a", "/subscriptions", "/subscriptions/a/resourceGroups",
    "/subscriptions/a/resourceGroups/b/providers",
    "/subscriptions/a/resourceGroups/b/providers/Microsoft.ApiManagement",
    "/subscriptions/a/resourceGroups/b/providers/Microsoft.Web/service/c",
    f"{SERVICE}/tenant/access", "/subscription/a", "/subscriptions/a/groups/b", "//", "/subscriptions//a",
    "/subscriptions/..", "/subscriptions/a\nb", "/subscriptions/" + "x" * 300,
])
def test_invalid_scopes(scope: str) -> None:
    with pytest.raises(ValueError, match="scope"):
        scope_segments(scope)
    with pytest.raises(ValueError, match="scope"):
        Principal("p", Role.READER, scope, PrincipalKind.BEARER)


def test_scoped_principal_is_confined_to_its_scope() -> None:
    operator = principal(Role.KEY_OPERATOR, SERVICE)
    assert authorize(operator, "access.list_secrets", ACCESS + "/listSecrets")
    assert not authorize(operator, "access.list_secrets", ACCESS.replace("/svc/", "/svc2/") + "/listSecrets")
    assert not authorize(operator, "services.list",
                         f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.ApiManagement/service")
    owner_elsewhere = principal(Role.OWNER, "/subscriptions/other")
    assert not authorize(owner_elsewhere, "access.get", ACCESS)


def test_principal_normalizes_and_validates() -> None:
    p = Principal("alice", "owner", "/subscriptions/a/", "sas")  # type: ignore[arg-type]
    assert (p.role, p.kind, p.scope) == (Role.OWNER, PrincipalKind.SAS, "/subscriptions/a")
    with pytest.raises(ValueError, match="admin"):
        Principal("alice", "admin", "/", PrincipalKind.BEARER)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="subject"):
        Principal("", Role.READER, "/", PrincipalKind.BEARER)
    with pytest.raises(ValueError, match="cookie"):
        Principal("alice", Role.READER, "/", "cookie")  # type: ignore[arg-type]


def test_anonymous_and_sas_principals() -> None:
    anonymous = Principal.anonymous()
    assert (anonymous.role, anonymous.scope, anonymous.kind) == (Role.OWNER, "/", PrincipalKind.NONE)
    sas = Principal.for_sas("integration", SERVICE)
    assert (sas.sub, sas.role, sas.scope) == ("integration", Role.KEY_OPERATOR, SERVICE)
    assert sas.kind is PrincipalKind.SAS
    assert authorize(sas, "access.regenerate_primary_key", ACCESS + "/regeneratePrimaryKey")
    assert not authorize(sas, "services.delete", SERVICE)

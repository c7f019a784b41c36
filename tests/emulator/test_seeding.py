"""The seed document format, without a server: what it accepts, what it refuses and how it says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tenant_access import seeding
from tenant_access.domain.models import AccessName

SUB = "11111111-2222-3333-4444-555555555555"


def _problems(document: Any) -> dict[str, str]:
    with pytest.raises(seeding.SeedError) as caught:
        seeding.parse(document)
    return dict(caught.value.problems)


def test_defaults_fill_what_a_test_rig_does_not_care_about() -> None:
    (svc,) = seeding.parse({"subscription": SUB, "resource_group": "rg", "services": [{"name": "a"}]})
    assert (svc.ref.subscription_id, svc.ref.resource_group, svc.ref.name) == (SUB, "rg", "a")
    assert (svc.spec.location, svc.spec.sku_name, svc.spec.sku_capacity) == ("westeurope", "Developer", 1)
    assert (svc.spec.publisher_email, svc.spec.publisher_name, svc.spec.tags) == (
        "admin@example.com", "tenant-access", {})
    assert svc.access == {}


def test_entries_override_the_document_defaults_and_sku_takes_both_forms() -> None:
    one, two = seeding.parse({"subscription": SUB, "resource_group": "rg", "services": [
        {"name": "a", "resource_group": "elsewhere", "sku": "premium"},
        {"name": "b", "sku": {"name": "Basic", "capacity": 3}, "git_access": {"enabled": False},
         "access": {"principal_id": "robot", "secondary_key": "k" * 32}},
    ]})
    assert (one.ref.resource_group, one.spec.sku_name) == ("elsewhere", "Premium")
    assert (two.spec.sku_name, two.spec.sku_capacity) == ("Basic", 3)
    assert two.access == {AccessName.GIT: {"enabled": False},
                          AccessName.ACCESS: {"principal_id": "robot", "secondary_key": "k" * 32}}


def test_an_empty_document_is_fine() -> None:
    assert seeding.parse({}) == []
    assert seeding.parse({"services": None}) == []


def test_dump_fields_are_ignored_and_masked_keys_mean_no_key() -> None:
    (svc,) = seeding.parse({"version": 1, "faults": [], "services": [{
        "subscription": SUB, "resource_group": "rg", "name": "a", "id": "/x", "etag": "e",
        "created_at": "t", "updated_at": "t",
        "access": {"enabled": True, "primary_key": "***", "secondary_key": "***", "etag": "e",
                   "primary_key_version_id": "v", "secondary_key_version_id": "v", "updated_at": "t"},
    }]})
    assert svc.access == {AccessName.ACCESS: {"enabled": True}}


def test_every_problem_is_named_with_its_place() -> None:
    problems = _problems({"version": 2, "extra": 1, "services": [
        {"subscription": "nope", "resource_group": "bad/rg", "name": "-x", "location": "", "sku": "Huge",
         "tags": {"k": 5}, "publisher_email": 7, "access": {"enabled": "yes", "primary_key": "short", "color": 1}},
        "not a mapping",
        {"subscription": SUB, "resource_group": "rg", "name": "dup"},
        {"subscription": SUB, "resource_group": "RG", "name": "DUP"},
        {"subscription": SUB, "resource_group": "rg", "name": "g", "git_access": "on", "sku": {"nme": "Basic"}},
    ]})
    assert set(problems) >= {
        "version", "extra", "services[0].subscription", "services[0].resource_group", "services[0].name",
        "services[0].location", "services[0].sku.name", "services[0].tags.k", "services[0].publisher_email",
        "services[0].access.enabled", "services[0].access.primary_key", "services[0].access.color",
        "services[1]", "services[3].name", "services[4].git_access", "services[4].sku.nme",
    }
    assert "services[2].name" not in problems
    assert problems["services[3].name"] == "the same service as services[2]"


@pytest.mark.parametrize("document", [[], "services: []", None, 3])
def test_a_document_is_a_mapping(document: Any) -> None:
    assert "(document)" in _problems(document)


def test_services_must_be_a_list() -> None:
    assert _problems({"services": {"name": "a"}}) == {"services": "must be a list"}


def test_missing_names_and_places_are_required() -> None:
    assert _problems({"services": [{}]}) == {"services[0].subscription": "required",
                                             "services[0].resource_group": "required",
                                             "services[0].name": "required"}


def test_files_are_json_or_yaml(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"services": []}')
    (tmp_path / "a.yaml").write_text("services:\n  - name: x\n    access: {enabled: no}\n")
    assert seeding.load_file(tmp_path / "a.json") == {"services": []}
    assert seeding.load_file(tmp_path / "a.yaml") == {"services": [{"name": "x", "access": {"enabled": False}}]}
    (tmp_path / "b.json").write_text("{")
    with pytest.raises(seeding.SeedError, match="not valid JSON"):
        seeding.load_file(tmp_path / "b.json")
    (tmp_path / "b.yaml").write_text("a: [")
    with pytest.raises(seeding.SeedError, match="not valid YAML"):
        seeding.load_file(tmp_path / "b.yaml")
    with pytest.raises(seeding.SeedError, match="cannot read"):
        seeding.load_file(tmp_path / "missing.yaml")

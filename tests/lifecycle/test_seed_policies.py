"""Seed documents declare rotation policies; the state dump shows them (and their status) in a
form that seeds again; re-applying changes nothing; a bad policy is named by its path."""

from __future__ import annotations

from typing import Any

import pytest

from tenant_access.client import ValidationError
from tenant_access.testing import RunningServer

SUB = "11111111-2222-3333-4444-555555555555"
POLICY = {"lifetimeActions": [{"trigger": {"timeAfterCreate": "P90D"}, "action": {"type": "Rotate"}}],
          "attributes": {"expiryTime": "P120D"}, "gracePeriod": "PT1H"}


def _doc(policy: Any) -> dict[str, Any]:
    return {"subscription": SUB, "resource_group": "rg",
            "services": [{"name": "seeded", "access": {"enabled": True, "rotation_policy": policy}}]}


def test_a_seeded_policy_is_stored_shown_and_idempotent(tenant_access_server: RunningServer) -> None:
    server = tenant_access_server
    assert server.emulator.seed(_doc(POLICY))[0]["result"] == "created"
    state = server.emulator.state()
    access = state["services"][0]["access"]
    assert access["rotation_policy"]["lifetimeActions"] == POLICY["lifetimeActions"]
    assert access["rotation_policy"]["attributes"] == {"expiryTime": "P120D"}
    assert access["rotation_status"]["nextRotation"] and access["rotation_status"]["blockedSince"] is None
    assert "rotation_policy" not in state["services"][0]["git_access"]
    assert server.emulator.seed(_doc(POLICY))[0]["result"] == "unchanged"
    assert server.emulator.seed(state)[0]["result"] == "unchanged"  # a dump seeds again
    changed = {**POLICY, "gracePeriod": "PT2H"}
    assert server.emulator.seed(_doc(changed))[0]["result"] == "updated"
    assert server.emulator.state()["services"][0]["access"]["rotation_policy"]["gracePeriod"] == "PT2H"


def test_a_bad_seeded_policy_is_named_by_its_path(tenant_access_server: RunningServer) -> None:
    with pytest.raises(ValidationError) as caught:
        tenant_access_server.emulator.seed(_doc({"lifetimeActions": [{"trigger": {"timeAfterCreate": "soon"},
                                                                      "action": {"type": "Rotate"}}]}))
    fields = [d.field for d in caught.value.details]
    assert "body.services[0].access.rotation_policy.lifetimeActions[0].trigger.timeAfterCreate" in fields, fields

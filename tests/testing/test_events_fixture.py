"""Testing a handler against the emulator, as docs/events.md shows: subscribe the built-in sink
with the Python client, rotate, and assert on what arrived, with no receiver of your own."""

from __future__ import annotations

import pytest

from tenant_access.client import ServiceRef, ValidationError
from tenant_access.testing import RunningServer

SUB = "11111111-2222-3333-4444-555555555555"
RIG = {"subscription": SUB, "resource_group": "rg", "services": [{"name": "apim"}]}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.tenant_access(seed=RIG, emulator_controls=True)
def test_deliveries_reach_the_sink(tenant_access_server: RunningServer) -> None:
    server = tenant_access_server
    ref = ServiceRef(SUB, "rg", "apim")
    made = server.client.put_event_subscription(ref, "mine", server.emulator.sink_url("mine"),
                                                event_types=["Microsoft.ApiManagement.TenantAccess.KeyRegenerated"],
                                                secret=SECRET)
    assert (made.name, made.signed, made.schema) == ("mine", True, "CloudEventSchemaV1_0")
    assert [s.name for s in server.client.list_event_subscriptions(ref)] == ["mine"]
    rotated = server.client.regenerate_key(ref.access(), "secondary")
    got = server.emulator.sink("mine", wait_for=1)
    assert len(got) == 1
    assert got[0]["body"]["data"]["newVersionId"] == rotated.id
    assert server.events()[-1]["id"] == got[0]["headers"]["webhook-id"]
    assert server.client.delete_event_subscription(ref, "mine") is True
    assert server.client.delete_event_subscription(ref, "mine") is False


@pytest.mark.tenant_access(seed=RIG)
def test_without_the_flag_a_private_destination_is_refused(tenant_access_server: RunningServer) -> None:
    ref = ServiceRef(SUB, "rg", "apim")
    with pytest.raises(ValidationError, match="allow-private-event-destinations"):
        tenant_access_server.client.put_event_subscription(ref, "mine", "http://127.0.0.1:9/hook")


"""The event model: every type has a schema, every payload the service emits fits it (and so carries
no key material: the schemas forbid any other member), and both wire shapes hold what their
specifications require."""

from __future__ import annotations

import datetime as _dt
import json

import jsonschema
import pytest

from tenant_access.domain import events
from tenant_access.domain.models import AccessConfig, AccessName, KeySlot, ServiceRef

REF = ServiceRef("11111111-2222-3333-4444-555555555555", "rg1", "svc1")
AT = _dt.datetime(2026, 12, 4, 14, 0, tzinfo=_dt.UTC)
OLD, NEW = "0" * 24, "1" * 24


def _every_kind() -> list[events.Event]:
    return [
        events.key_regenerated(REF, AccessName.ACCESS, KeySlot.SECONDARY, OLD, NEW, "alice", AT),
        events.key_regenerated(REF, AccessName.GIT, KeySlot.PRIMARY, OLD, NEW, "policy", AT),
        events.key_near_expiry(REF, AccessName.ACCESS, KeySlot.PRIMARY, OLD, AT + _dt.timedelta(days=3), AT),
        events.key_expired(REF, AccessName.ACCESS, KeySlot.PRIMARY, OLD, AT),
        events.rotation_blocked(REF, AccessName.ACCESS, KeySlot.PRIMARY, (OLD, NEW), "both keys in use", AT),
        *events.access_changes(_config(enabled=False), True, "alice", AT),
        *events.access_changes(_config(enabled=True), False, "alice", AT),
        events.service_created(REF, "alice", AT),
        events.service_deleted(REF, "alice", AT),
    ]


def _config(*, enabled: bool) -> AccessConfig:
    return AccessConfig(REF, AccessName.ACCESS, "1", enabled, "etag", AT, AT, OLD, AT, NEW, AT)


def test_every_type_is_emitted_and_fits_its_schema() -> None:
    made = _every_kind()
    assert {e.type for e in made} == set(events.TYPES)
    for event in made:
        jsonschema.Draft202012Validator(events.SCHEMAS[event.type]).validate(event.data)


def test_a_payload_with_an_extra_member_such_as_a_key_is_refused_by_its_schema() -> None:
    data = dict(_every_kind()[0].data, primaryKey="secret")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(events.SCHEMAS[events.KEY_REGENERATED]).validate(data)


def test_by_policy_follows_the_actor() -> None:
    assert [e.data["byPolicy"] for e in _every_kind()[:2]] == [False, True]


def test_an_unknown_type_cannot_be_emitted() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        events.emit("KeyRegenerated", REF.resource_id, "keys", {}, AT)


def test_cloudevents_structured_mode_has_the_required_attributes() -> None:
    event = _every_kind()[0]
    body, content_type = events.body(event, events.SCHEMA_CLOUDEVENTS)
    sent = json.loads(body)
    assert content_type == "application/cloudevents+json"
    assert sent["specversion"] == "1.0"
    assert sent["id"] == event.id
    assert sent["source"] == REF.resource_id + "/tenant/access"
    assert sent["type"] == events.KEY_REGENERATED
    assert sent["subject"] == "keys/secondary"
    assert sent["time"] == "2026-12-04T14:00:00.000000Z"
    assert sent["datacontenttype"] == "application/json"
    assert sent["data"]["newVersionId"] == NEW


def test_event_grid_schema_is_an_array_of_events_with_topic_and_subject() -> None:
    event = _every_kind()[0]
    body, content_type = events.body(event, events.SCHEMA_EVENTGRID)
    sent = json.loads(body)
    assert content_type == "application/json"
    assert isinstance(sent, list)
    assert len(sent) == 1
    assert sent[0] == {"id": event.id, "topic": REF.resource_id, "subject": "tenant/access/keys/secondary",
                       "eventType": events.KEY_REGENERATED, "eventTime": "2026-12-04T14:00:00.000000Z",
                       "data": event.data, "dataVersion": "1.0", "metadataVersion": "1"}


def test_ids_are_unique_and_fixed_per_event() -> None:
    made = _every_kind()
    assert len({e.id for e in made}) == len(made)
    assert json.loads(events.body(made[0], events.SCHEMA_CLOUDEVENTS)[0])["id"] == \
        json.loads(events.body(made[0], events.SCHEMA_EVENTGRID)[0])[0]["id"]

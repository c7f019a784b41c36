"""The moved clock: one "now" for SAS expiry (and, through the use cases, for every change), that
only the emulator controls move, and that a reset puts back to real time."""

from __future__ import annotations

import datetime as _dt

import httpx
import pytest

from tenant_access.client import ServiceRef, ValidationError, sas_token
from tenant_access.clock import format_duration, parse_duration
from tenant_access.testing import RunningServer, run_server

SUB = "11111111-2222-3333-4444-555555555555"
REF = ServiceRef(SUB, "rg", "clocked")
API = "api-version=2024-05-01"
URL = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ApiManagement/service/clocked?{API}"


@pytest.fixture
def server(tenant_access_server: RunningServer) -> RunningServer:
    tenant_access_server.emulator.seed({"services": [{"subscription": SUB, "resource_group": "rg", "name": "clocked",
                                                     "access": {"enabled": True}}]})
    return tenant_access_server


def _sas_get(server: RunningServer, key: str, expiry: _dt.datetime) -> httpx.Response:
    header = "SharedAccessSignature " + sas_token("integration", key, expiry)
    return httpx.get(server.url + URL, headers={"Authorization": header})


def test_advance_moves_sas_expiry_and_reset_returns_to_real_time(server: RunningServer) -> None:
    key = server.client.list_secrets(REF.access()).primary_key
    real = _dt.datetime.now(_dt.UTC)
    expiry = real + _dt.timedelta(hours=1)
    assert _sas_get(server, key, expiry).status_code == 200
    moved = server.advance("PT2H")
    assert moved["moved"] is True and 7199 <= moved["offset_seconds"] <= 7201
    assert server.now() - real >= _dt.timedelta(hours=2)
    # The same signature, an hour from real now, has expired on the server's clock (remembered or not).
    assert _sas_get(server, key, expiry).status_code == 401
    later = server.now() + _dt.timedelta(minutes=10)
    assert _sas_get(server, key, later).status_code == 200
    server.emulator.reset()
    assert server.emulator.clock()["moved"] is False
    # Bearer tokens were never on the moved clock: the owner's client kept working throughout.


def test_changes_are_stamped_with_the_moved_clock(server: RunningServer) -> None:
    server.emulator.set_clock("2031-05-06T07:08:09Z")
    rotated = server.client.regenerate_secondary_key(REF.access())
    assert rotated.created_at.year == 2031 and (rotated.created_at.month, rotated.created_at.day) == (5, 6)


def test_bad_clock_requests_are_explained(server: RunningServer) -> None:
    with pytest.raises(ValidationError):
        server.advance("90 days")
    with pytest.raises(ValidationError):
        server.advance("PT0S")
    with pytest.raises(ValidationError):
        server.emulator.set_clock("2031-05-06T07:08:09")  # no time zone
    assert server.emulator.clock()["moved"] is False


def test_the_clock_is_an_emulator_control_only() -> None:
    with run_server(auth="strict", emulator_controls=False) as strict:
        response = httpx.post(f"{strict.url}/_emulator/clock/advance", json={"by": "P1D"}, headers=strict.headers())
        assert response.status_code == 404


@pytest.mark.parametrize(("text", "seconds"), [("P90D", 90 * 86400), ("PT15M", 900), ("P1Y", 365 * 86400),
                                               ("P1M", 30 * 86400), ("P2W", 14 * 86400), ("P1DT1H1M1S", 90061),
                                               ("PT0.5S", 0.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "90D", "P-1D", "P1.5D", "PT1H1D", "P999999999D"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(parse_duration(t)) for t in ("P90D", "PT15M", "P1DT2H", "PT0S")] == [
        "P90D", "PT15M", "P1DT2H", "PT0S"]

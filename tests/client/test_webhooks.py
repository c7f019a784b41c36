"""The receiver helper: a good delivery passes; a tampered body, a wrong secret, an old or future
timestamp and a missing header are refused. Signed by the server's own signing code, so the two
sides are checked against each other (and against the Standard Webhooks vector in tests/unit)."""

from __future__ import annotations

import json
import time

import pytest

from tenant_access import events_net
from tenant_access.client.webhooks import WebhookVerificationError, verify

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = json.dumps({"specversion": "1.0", "id": "0123", "type": "t"}).encode()


def _headers(body: bytes = BODY, at: int | None = None, secret: str = SECRET) -> dict[str, str]:
    return events_net.headers("0123", int(time.time()) if at is None else at, body, "application/json", secret)


def test_a_good_delivery_is_accepted() -> None:
    assert verify(_headers(), BODY, SECRET)["id"] == "0123"


def test_a_tampered_body_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="changed body"):
        verify(_headers(), BODY.replace(b'"t"', b'"u"'), SECRET)


def test_a_wrong_secret_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="wrong secret"):
        verify(_headers(secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"), BODY, SECRET)


@pytest.mark.parametrize("offset", [-301, 301, -3600])
def test_an_old_or_future_timestamp_is_refused(offset: int) -> None:
    with pytest.raises(WebhookVerificationError, match="replay"):
        verify(_headers(at=int(time.time()) + offset), BODY, SECRET)


def test_the_window_is_configurable() -> None:
    headers = _headers(at=int(time.time()) - 200)
    assert verify(headers, BODY, SECRET)["id"] == "0123"
    with pytest.raises(WebhookVerificationError):
        verify(headers, BODY, SECRET, tolerance=100)


def test_a_missing_signature_is_refused() -> None:
    headers = _headers()
    del headers["webhook-signature"]
    with pytest.raises(WebhookVerificationError, match="webhook-signature header is missing"):
        verify(headers, BODY, SECRET)

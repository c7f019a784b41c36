"""Destination safety and Standard Webhooks signatures."""

from __future__ import annotations

import asyncio

import pytest

from tenant_access import events_net


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data",
    "http://localhost:8080/hook", "http://[::1]/hook", "http://192.168.1.10/", "http://100.64.0.1/",
    "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
])
def test_private_loopback_link_local_and_metadata_destinations_are_refused(url: str) -> None:
    with pytest.raises(events_net.Refused, match="allow-private-event-destinations"):
        asyncio.run(events_net.resolve(url, allow_private=False))


def test_the_flag_allows_them() -> None:
    assert asyncio.run(events_net.resolve("http://localhost:8080/hook", allow_private=True)) in ("127.0.0.1", "::1")


def test_a_public_address_is_allowed() -> None:
    assert asyncio.run(events_net.resolve("https://93.184.215.14/hook", allow_private=False)) == "93.184.215.14"


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(events_net.Refused, match="does not resolve"):
        asyncio.run(events_net.resolve("http://no-such-host.invalid/hook", allow_private=True))


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks specification and its reference libraries.
    sig = events_net.signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                               1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

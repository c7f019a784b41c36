"""The server's own tokens: issuer, lifetimes, service-principal claims, and signing-key rotation
with its overlap window; and the cap on shared access signatures' expiry."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import jwt
import pytest

from tenant_access.security import sas, signing_keys
from tenant_access.security.errors import InvalidCredential
from tenant_access.security.signing_keys import OVERLAP_MARGIN, SigningKeyring
from tenant_access.security.tokens import DEFAULT_AUDIENCE, MAX_LIFETIME, TokenVerifier, issue_token, own_audiences
from tenant_access.security.verification_keys import hmac_key, signing_key_id

NOW = 1_800_000_000.0
ISSUER = "https://keys.example.com"
EXTERNAL = b"e" * 32


def _keyring(tmp_path: Path, lifetime: int = MAX_LIFETIME) -> SigningKeyring:
    return SigningKeyring(tmp_path, lifetime)


def _verifier(ring: SigningKeyring, **kwargs: object) -> TokenVerifier:
    return TokenVerifier.with_keys([hmac_key(EXTERNAL)], own=ring, own_issuer=ISSUER,
                                   audiences=own_audiences(ISSUER), **kwargs)  # type: ignore[arg-type]


def _reason(check: TokenVerifier, token: str, now: float = NOW) -> str:
    with pytest.raises(InvalidCredential) as caught:
        check.check(token, now=now)
    return caught.value.reason


def test_own_tokens_need_the_own_issuer_whatever_token_issuer_says(tmp_path: Path) -> None:
    ring = _keyring(tmp_path)
    check = _verifier(ring, issuers=["https://login.microsoftonline.com/t/v2.0"])
    own = issue_token(ring.current(), "a", "reader", "/", 600, iss=ISSUER, now=NOW)
    assert jwt.decode(own, options={"verify_signature": False})["iss"] == ISSUER
    assert jwt.get_unverified_header(own)["kid"] == signing_key_id(ring.current())
    assert check.verify(own, now=NOW).sub == "a"
    for other in (None, "https://login.microsoftonline.com/t/v2.0", ISSUER + "/"):
        token = issue_token(ring.current(), "a", "reader", "/", 600, iss=other, now=NOW)
        assert _reason(check, token).startswith("bearer: issuer not accepted")
    # Tokens of external keys answer to --token-issuer, not to the server's own issuer.
    external = issue_token(EXTERNAL, "b", "reader", "/", 600, iss="https://login.microsoftonline.com/t/v2.0", now=NOW)
    assert check.verify(external, now=NOW).sub == "b"
    assert _reason(check, issue_token(EXTERNAL, "b", "reader", "/", 600, iss=ISSUER, now=NOW)) == \
        "bearer: issuer not accepted"


def test_the_public_url_is_an_audience_with_and_without_the_slash(tmp_path: Path) -> None:
    check = _verifier(_keyring(tmp_path))
    ring = check.own
    assert ring is not None
    for aud in (ISSUER, ISSUER + "/", DEFAULT_AUDIENCE):
        assert check.verify(issue_token(ring.current(), "a", "reader", "/", 600, aud=aud, iss=ISSUER, now=NOW),
                            now=NOW).sub == "a"
    foreign = issue_token(ring.current(), "a", "reader", "/", 600, aud="https://evil.example/", iss=ISSUER, now=NOW)
    assert _reason(check, foreign) == "bearer: audience not accepted"


@pytest.mark.parametrize(("iat", "exp", "reason"), [
    (NOW, 10**30, "bearer: expires too far ahead (exp)"),
    (None, 10**30, "bearer: expires too far ahead (exp)"),
    (NOW, NOW + 366 * 24 * 3600, "bearer: expires too far ahead (exp)"),
    (NOW - 3600, NOW + MAX_LIFETIME - 1800, "bearer: lifetime too long (exp - iat)"),
])
def test_lifetimes_are_bounded(tmp_path: Path, iat: float | None, exp: float, reason: str) -> None:
    ring = _keyring(tmp_path)
    claims = {"sub": "a", "role": "owner", "scope": "/", "aud": DEFAULT_AUDIENCE, "iss": ISSUER, "exp": exp}
    if iat is not None:
        claims["iat"] = iat
    token = jwt.encode(claims, ring.current().reveal(), algorithm="HS256",
                       headers={"kid": signing_key_id(ring.current())})
    assert _reason(_verifier(ring), token) == reason


def test_the_longest_allowed_token_passes_and_issuing_longer_is_refused(tmp_path: Path) -> None:
    ring = _keyring(tmp_path)
    longest = issue_token(ring.current(), "a", "reader", "/", MAX_LIFETIME, iss=ISSUER, now=NOW)
    assert _verifier(ring).verify(longest, now=NOW).sub == "a"
    with pytest.raises(ValueError, match="maximum token lifetime"):
        issue_token(ring.current(), "a", "reader", "/", MAX_LIFETIME + 1, iss=ISSUER)
    with pytest.raises(ValueError, match="maximum token lifetime"):
        issue_token(ring.current(), "a", "reader", "/", 366 * 24 * 3600, iss=ISSUER, max_lifetime=3600 * 48)


def test_a_service_principals_token_names_it_and_its_secret_generation(tmp_path: Path) -> None:
    ring = _keyring(tmp_path)
    check = _verifier(ring)
    token = issue_token(ring.current(), "cid", "owner", "/", 600, iss=ISSUER, now=NOW, app=("cid", 3))
    verified = check.check(token, now=NOW)
    assert verified.app == ("cid", 3)
    assert verified.epoch == ring.epoch
    plain = check.check(issue_token(ring.current(), "cli", "owner", "/", 600, iss=ISSUER, now=NOW), now=NOW)
    assert plain.app is None
    # An external key's token claiming to be an app token is not treated as one of ours.
    assert check.check(issue_token(EXTERNAL, "x", "owner", "/", 600, now=NOW, app=("cid", 0)), now=NOW).app is None


def test_rotation_keeps_the_old_key_for_the_overlap_window_then_drops_it(tmp_path: Path) -> None:
    lifetime = 3600
    ring = _keyring(tmp_path, lifetime)
    old_key = ring.current()
    old = issue_token(old_key, "a", "reader", "/", 600, iss=ISSUER, now=NOW)
    old_id, new_id = signing_keys.rotate(tmp_path, lifetime, now=NOW)
    assert old_id == signing_key_id(old_key) != new_id
    epoch = ring.epoch
    ring.refresh(force=True)
    assert ring.epoch == epoch + 1
    assert signing_key_id(ring.current()) == new_id
    check = _verifier(ring)
    new = issue_token(ring.current(), "b", "reader", "/", 600, iss=ISSUER, now=NOW)
    assert check.verify(new, now=NOW).sub == "b"
    assert check.verify(old, now=NOW + 300).sub == "a"
    verified = check.check(old, now=NOW)
    assert verified.until == NOW + 600  # its exp comes before the key's window closes
    closes = NOW + lifetime + OVERLAP_MARGIN
    late = issue_token(old_key, "a", "reader", "/", lifetime, iss=ISSUER, now=closes - lifetime)
    assert check.check(late, now=closes - 1).until == closes
    assert _reason(check, late, now=closes) == "bearer: no HS256 key with that kid"
    assert [state for _, state, _ in signing_keys.status(tmp_path, lifetime, now=NOW)] == [
        "current", "retired, verifying"]
    assert [state for _, state, _ in signing_keys.status(tmp_path, lifetime, now=closes)] == [
        "current", "retired, expired"]


def test_rotation_files_are_private_and_expired_keys_are_pruned(tmp_path: Path) -> None:
    SigningKeyring(tmp_path, 3600)
    signing_keys.rotate(tmp_path, 3600, now=NOW)
    signing_keys.rotate(tmp_path, 3600, now=NOW + 10)
    assert len(json.loads((tmp_path / signing_keys.RETIRED_FILE).read_text())["keys"]) == 2
    signing_keys.rotate(tmp_path, 3600, now=NOW + 3600 + OVERLAP_MARGIN + 20)
    assert len(json.loads((tmp_path / signing_keys.RETIRED_FILE).read_text())["keys"]) == 1
    for name in (signing_keys.SIGNING_KEY_FILE, signing_keys.RETIRED_FILE):
        assert os.stat(tmp_path / name).st_mode & 0o077 == 0


def test_a_running_keyring_follows_a_rotation_within_a_second(tmp_path: Path) -> None:
    import time

    ring = _keyring(tmp_path)
    before = signing_key_id(ring.current())
    _, new_id = signing_keys.rotate(tmp_path, MAX_LIFETIME)
    deadline = time.monotonic() + 1.5
    while signing_key_id(ring.current()) != new_id:
        assert time.monotonic() < deadline, "the keyring did not follow the rotation within a second"
        time.sleep(0.05)
    assert before != new_id


def test_a_sas_expiring_further_than_the_cap_is_refused() -> None:
    now = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    cap = dt.timedelta(days=30)
    for expiry in (dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.UTC), now + cap + dt.timedelta(minutes=1)):
        token = sas.parse_sas(sas.make_sas("uid", "k" * 40, expiry))
        with pytest.raises(InvalidCredential) as caught:
            sas.verify_sas(token, [("v1", "k" * 40)], now, max_lifetime=cap)
        assert caught.value.reason == "sas: expiry too far ahead"
    within = sas.parse_sas(sas.make_sas("uid", "k" * 40, now + cap))
    assert sas.verify_sas(within, [("v1", "k" * 40)], now, max_lifetime=cap) == "v1"

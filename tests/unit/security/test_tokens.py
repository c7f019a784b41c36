from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tenant_access.security import tokens
from tenant_access.security.authorization import Principal, PrincipalKind, Role
from tenant_access.security.errors import InvalidCredential, KeyMaterialError
from tenant_access.security.secret import Secret
from tenant_access.security.tokens import ARM_AUDIENCES, DEFAULT_AUDIENCE, TokenVerifier, issue_token
from tenant_access.security.verification_keys import hmac_key, public_key, signing_key_id
from tests.unit.security.hostile import garbage_inputs

SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32
NOW = 1_800_000_000.0
SUB_SCOPE = "/subscriptions/11111111-2222-3333-4444-555555555555"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "alice", "role": "key-operator", "scope": SUB_SCOPE, "aud": DEFAULT_AUDIENCE,
        "iat": int(NOW), "nbf": int(NOW), "exp": int(NOW) + 3600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: bytes = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


def hand_signed(payload: dict[str, Any], header: dict[str, Any], secret: bytes = SECRET) -> str:
    """HS256 without PyJWT, which refuses to encode some of the malformed tokens we need."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def segment(data: object) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def verifier(**kwargs: Any) -> TokenVerifier:
    return TokenVerifier.with_keys([hmac_key(SECRET, any_kid=True)], **kwargs)


def reason_of(check: TokenVerifier, token: Any, now: float = NOW) -> str:
    with pytest.raises(InvalidCredential) as caught:
        check.verify(token, now=now)
    assert caught.value.message == InvalidCredential.PUBLIC_MESSAGE  # the same, whatever the reason
    assert str(caught.value) == InvalidCredential.PUBLIC_MESSAGE
    if isinstance(token, str) and len(token) > 8:
        assert token not in caught.value.reason
        assert token not in repr(caught.value)
    # No chained parser exception may carry pieces of the token into a logged traceback.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__
    return caught.value.reason


# --- issuing ------------------------------------------------------------------------------------


def test_issued_token_carries_the_documented_claims() -> None:
    token = issue_token(SECRET, "alice", Role.READER, "/subscriptions/a/", 600, iss="https://issuer", now=NOW)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    assert header["kid"] == signing_key_id(SECRET)
    body = jwt.decode(token, SECRET, algorithms=["HS256"], audience=DEFAULT_AUDIENCE,
                      options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
    assert body["sub"] == "alice"
    assert body["role"] == "reader"
    assert body["scope"] == "/subscriptions/a"  # normalized
    assert body["aud"] == "https://management.azure.com/"
    assert body["iss"] == "https://issuer"
    assert body["iat"] == body["nbf"] == int(NOW)
    assert body["exp"] == int(NOW) + 600
    assert len(body["jti"]) == 32
    other = jwt.decode(issue_token(SECRET, "alice", Role.READER, "/", 600, now=NOW),
                       options={"verify_signature": False})
    assert other["jti"] != body["jti"]
    assert "iss" not in other


def test_issued_token_round_trips_through_the_verifier() -> None:
    token = issue_token(Secret(SECRET), "svc-1", "owner", "/", 3600, now=NOW)
    principal = TokenVerifier.with_keys([hmac_key(SECRET)]).verify(token, now=NOW + 10)
    assert principal == Principal("svc-1", Role.OWNER, "/", PrincipalKind.BEARER)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"secret": b"short"}, "32 bytes"),
    ({"sub": ""}, "sub"),
    ({"role": "admin"}, "admin"),
    ({"scope": "/subscription/a"}, "segment"),
    ({"scope": "subscriptions/a"}, "'/'"),
    ({"expires_in": 0}, "expires_in"),
    ({"expires_in": -5}, "expires_in"),
    ({"expires_in": True}, "expires_in"),
    ({"expires_in": 10**9}, "expires_in"),
])
def test_issue_token_validates_its_arguments(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"secret": SECRET, "sub": "a", "role": "reader", "scope": "/", "expires_in": 60}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        issue_token(**args)


# --- signature and key selection -----------------------------------------------------------------


def test_hs256_valid_token() -> None:
    principal = verifier().verify(hs256(claims()), now=NOW)
    assert principal == Principal("alice", Role.KEY_OPERATOR, SUB_SCOPE, PrincipalKind.BEARER)


def test_wrong_hmac_secret_is_refused() -> None:
    assert reason_of(verifier(), hs256(claims(), OTHER_SECRET)) == "bearer: signature matches no key"


def test_tampered_payload_and_signature_are_refused() -> None:
    token = hs256(claims(role="reader"))
    header, _payload, signature = token.split(".")
    forged = f"{header}.{segment(claims(role='owner'))}.{signature}"
    assert reason_of(verifier(), forged) == "bearer: signature matches no key"
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert "signature" in reason_of(verifier(), f"{header}.{token.split('.')[1]}.{flipped}")
    assert reason_of(verifier(), f"{header}.{token.split('.')[1]}.") == "bearer: signature matches no key"


def test_alg_none_is_refused_outside_emulator_mode() -> None:
    token = jwt.encode(claims(), "", algorithm="none")
    assert reason_of(verifier(), token) == "bearer: algorithm not accepted"


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS512", "PS256", "EdDSA", "NONE", ""])
def test_only_the_three_algorithms_are_accepted(alg: str) -> None:
    token = f"{segment({'alg': alg, 'typ': 'JWT'})}.{segment(claims())}.c2ln"
    assert reason_of(verifier(), token) == "bearer: algorithm not accepted"


def test_rs256_public_key_cannot_be_used_as_an_hs256_secret(rsa_private: rsa.RSAPrivateKey) -> None:
    """The classic algorithm-confusion attack: sign HS256 with the public key's PEM as the secret."""
    pem = rsa_private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    token = hand_signed(claims(), {"alg": "HS256", "typ": "JWT"}, pem)
    check = TokenVerifier.with_keys([public_key(rsa_private.public_key())])
    assert reason_of(check, token) == "bearer: no HS256 key"


def test_rs256_and_es256_with_kid_selection(
    rsa_private: rsa.RSAPrivateKey,
    other_rsa_private: rsa.RSAPrivateKey,
    ec_private: ec.EllipticCurvePrivateKey,
) -> None:
    check = TokenVerifier.with_keys([
        public_key(rsa_private.public_key(), "rsa-1"),
        public_key(other_rsa_private.public_key(), "rsa-2"),
        public_key(ec_private.public_key(), "ec-1"),
    ])
    for private, alg, kid in ((rsa_private, "RS256", "rsa-1"), (other_rsa_private, "RS256", "rsa-2"),
                              (ec_private, "ES256", "ec-1")):
        assert check.verify(jwt.encode(claims(), private, alg, {"kid": kid}), now=NOW).sub == "alice"
    # Without kid every key of the algorithm is tried.
    assert check.verify(jwt.encode(claims(), other_rsa_private, "RS256"), now=NOW).sub == "alice"
    # A kid naming another key is not rescued by trying the rest.
    wrong_kid = jwt.encode(claims(), other_rsa_private, "RS256", {"kid": "rsa-1"})
    assert reason_of(check, wrong_kid) == "bearer: signature matches no key"
    assert reason_of(check, jwt.encode(claims(), rsa_private, "RS256", {"kid": "nope"})) == (
        "bearer: no RS256 key with that kid")
    numeric_kid = hand_signed(claims(), {"alg": "RS256", "kid": 5})
    assert reason_of(check, numeric_kid) == "bearer: kid is not a string"
    # An ES256 header over an RSA key's signature, or the reverse, finds no usable key.
    ec_only = TokenVerifier.with_keys([public_key(ec_private.public_key())])
    assert reason_of(ec_only, jwt.encode(claims(), rsa_private, "RS256")) == "bearer: no RS256 key"


def test_a_key_without_kid_serves_tokens_with_any_kid(rsa_private: rsa.RSAPrivateKey) -> None:
    check = TokenVerifier.with_keys([public_key(rsa_private.public_key())])
    token = jwt.encode(claims(), rsa_private, "RS256", {"kid": "whatever"})
    assert check.verify(token, now=NOW).sub == "alice"


def test_signing_key_rotation_selects_the_secret_by_derived_kid() -> None:
    check = TokenVerifier.with_keys([hmac_key(OTHER_SECRET), hmac_key(SECRET)])
    assert check.verify(issue_token(SECRET, "a", "reader", "/", 60, now=NOW), now=NOW).sub == "a"
    assert check.verify(issue_token(OTHER_SECRET, "b", "reader", "/", 60, now=NOW), now=NOW).sub == "b"
    # A derived kid pins the secret: a token signed by one secret but naming the other fails.
    lying = issue_token(SECRET, "a", "reader", "/", 60, now=NOW, kid=signing_key_id(OTHER_SECRET))
    assert reason_of(check, lying) == "bearer: signature matches no key"


def test_verifier_needs_keys_unless_emulating() -> None:
    with pytest.raises(KeyMaterialError):
        TokenVerifier.with_keys([])
    with pytest.raises(ValueError, match="leeway"):
        TokenVerifier.with_keys([hmac_key(SECRET)], leeway=-1)


# --- time, audience, issuer ----------------------------------------------------------------------


def test_expiry_with_the_documented_leeway() -> None:
    token = hs256(claims(exp=int(NOW)))
    assert tokens.DEFAULT_LEEWAY == 60
    assert verifier().verify(token, now=NOW + 59).sub == "alice"
    assert reason_of(verifier(), token, now=NOW + 60) == "bearer: expired"
    assert reason_of(verifier(leeway=0), token, now=NOW) == "bearer: expired"


def test_exp_is_required_and_must_be_a_finite_number() -> None:
    assert reason_of(verifier(), hs256(claims(exp=None))) == "bearer: no exp"
    assert reason_of(verifier(), hs256(claims(exp="2099-01-01"))) == "bearer: exp is not a number"
    assert reason_of(verifier(), hs256(claims(exp=True))) == "bearer: exp is not a number"
    header = segment({"alg": "HS256"})
    for literal in (b"Infinity", b"NaN", b"1e999"):
        body = segment(b'{"sub":"a","role":"reader","scope":"/","aud":"' + DEFAULT_AUDIENCE.encode()
                       + b'","exp":' + literal + b"}")
        reason = reason_of(TokenVerifier.emulator(), f"{header}.{body}.")
        assert reason in ("bearer: claims is not base64url JSON", "bearer: exp is not a number")


def test_nbf_and_iat_in_the_future() -> None:
    assert verifier().verify(hs256(claims(nbf=int(NOW) + 60)), now=NOW).sub == "alice"
    assert reason_of(verifier(), hs256(claims(nbf=int(NOW) + 61))) == "bearer: not yet valid (nbf)"
    assert reason_of(verifier(), hs256(claims(iat=int(NOW) + 3600))) == "bearer: issued in the future (iat)"


def test_audience_checks() -> None:
    for aud in ARM_AUDIENCES:
        assert verifier().verify(hs256(claims(aud=aud)), now=NOW).sub == "alice"
    assert verifier().verify(hs256(claims(aud=["x", DEFAULT_AUDIENCE])), now=NOW).sub == "alice"
    for bad in ("https://graph.microsoft.com/", ["x", "y"], None, 5, [5]):
        assert reason_of(verifier(), hs256(claims(aud=bad))) == "bearer: audience not accepted"
    assert verifier(audiences=()).verify(hs256(claims(aud=None)), now=NOW).sub == "alice"
    assert verifier(audiences=["api://mine"]).verify(hs256(claims(aud="api://mine")), now=NOW).sub == "alice"


def test_issuer_checked_only_when_configured() -> None:
    assert verifier().verify(hs256(claims(iss="anyone")), now=NOW).sub == "alice"
    strict = verifier(issuer="https://local/tenant")
    assert strict.verify(hs256(claims(iss="https://local/tenant")), now=NOW).sub == "alice"
    for bad in ("https://local/tenant/extra", "https://local/tenan", None, ["https://local/tenant"]):
        token = hand_signed(claims(iss=bad), {"alg": "HS256"})
        assert reason_of(strict, token) == "bearer: issuer not accepted"


# --- claims -> principal --------------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"sub": None}, "bearer: no sub"),
    ({"sub": ""}, "bearer: sub is not a non-empty string"),
    ({"sub": 42}, "bearer: sub is not a non-empty string"),
    ({"sub": "x" * 300}, "bearer: role, scope or sub not valid"),
    ({"role": None}, "bearer: no role"),
    ({"role": "admin"}, "bearer: role, scope or sub not valid"),
    ({"role": "Owner"}, "bearer: role, scope or sub not valid"),
    ({"role": ["owner"]}, "bearer: role is not a non-empty string"),
    ({"scope": None}, "bearer: no scope"),
    ({"scope": "openid profile"}, "bearer: role, scope or sub not valid"),
    ({"scope": "/subscriptions"}, "bearer: role, scope or sub not valid"),
    ({"scope": "/subscriptions/a/resourceGroups/b/providers/Microsoft.Web/sites/c"},
     "bearer: role, scope or sub not valid"),
])
def test_claims_must_name_a_valid_principal(overrides: dict[str, Any], reason: str) -> None:
    assert reason_of(verifier(), hs256(claims(**overrides))) == reason


def test_defaults_for_missing_role_and_scope_when_configured() -> None:
    lenient = TokenVerifier((hmac_key(SECRET, any_kid=True),), default_role=Role.READER,
                            default_scope="/subscriptions/x")
    principal = lenient.verify(hs256(claims(role=None, scope=None)), now=NOW)
    assert (principal.role, principal.scope) == (Role.READER, "/subscriptions/x")


# --- emulator mode ---------------------------------------------------------------------------------


def test_emulator_ignores_the_signature_but_not_the_rest() -> None:
    emulator = TokenVerifier.emulator()
    assert emulator.verify(hs256(claims(), OTHER_SECRET), now=NOW).role is Role.KEY_OPERATOR
    unsigned = jwt.encode(claims(), "", algorithm="none")
    assert emulator.verify(unsigned, now=NOW).sub == "alice"
    assert reason_of(emulator, hs256(claims(exp=int(NOW) - 120))) == "bearer: expired"
    other_audience = hs256(claims(aud="https://vault.azure.net"))
    assert reason_of(emulator, other_audience) == "bearer: audience not accepted"
    assert reason_of(emulator, hs256(claims(role="root"))) == "bearer: role, scope or sub not valid"
    assert reason_of(emulator, "not-a-jwt") == "bearer: not a compact JWS"


def test_emulator_defaults_to_owner_of_everything_for_foreign_tokens() -> None:
    # The shape of an Entra access token: no role or scope claim of ours, oid instead of our sub.
    entra_like = claims(sub=None, role=None, scope=None, oid="00000000-0000-0000-0000-0000000000c1",
                        scp="user_impersonation", iss="https://sts.windows.net/t/")
    principal = TokenVerifier.emulator().verify(hs256(entra_like, OTHER_SECRET), now=NOW)
    oid = "00000000-0000-0000-0000-0000000000c1"
    assert principal == Principal(oid, Role.OWNER, "/", PrincipalKind.BEARER)
    bare = TokenVerifier.emulator().verify(hs256(claims(sub=None, role=None, scope=None)), now=NOW)
    assert bare.sub == tokens.EMULATOR_SUBJECT
    narrow = TokenVerifier.emulator(default_role=Role.READER, default_scope="/subscriptions/s")
    assert narrow.verify(hs256(claims(role=None, scope=None)), now=NOW).role is Role.READER


# --- hostile input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["keys", "emulator"])
def test_garbage_never_crashes(mode: str) -> None:
    check = verifier() if mode == "keys" else TokenVerifier.emulator()
    for text in garbage_inputs(seed=11):
        with pytest.raises(InvalidCredential):
            check.verify(text, now=NOW)


@pytest.mark.parametrize("token", [
    None, 123, b"a.b.c", ["a"],
    "A" * 10_240,
    "eyJ" + "A" * 10_000 + ".eyJ.sig",
    "é" * 10_240 + ".a.b",
    "a" * (tokens.MAX_TOKEN_CHARS + 1),
])
def test_non_text_and_huge_inputs(token: Any) -> None:
    reason_of(verifier(), token)


@pytest.mark.parametrize(("header", "payload"), [
    ({"alg": "HS256"}, "[1, 2]"),                     # claims not an object
    ([1], {"exp": NOW + 60}),                          # header not an object
    ({"alg": "HS256"}, "[" * 5000 + "]" * 5000),        # deep nesting (RecursionError in json)
    ({"alg": "HS256"}, '{"exp": ' + "9" * 5000 + "}"),  # int too long to parse
    ({"alg": "HS256"}, '{"exp": ' + "9" * 400 + "}"),   # int too big for a float
    ({"alg": "HS256"}, b"\xff\xfe not utf-8"),
    ({"alg": "HS256", "b64": False, "crit": ["b64"]}, {"exp": NOW + 60}),
    ({"alg": "HS256", "crit": ["exp"]}, {"exp": NOW + 60}),
])
def test_structurally_hostile_tokens(header: Any, payload: Any) -> None:
    body = payload.encode() if isinstance(payload, str) else payload
    token = f"{segment(header)}.{segment(body)}.c2ln"
    reason_of(TokenVerifier.emulator(), token)
    reason_of(verifier(), token)


def test_duplicate_json_members_are_refused() -> None:
    header = segment(b'{"alg":"HS256","alg":"none"}')
    assert reason_of(TokenVerifier.emulator(), f"{header}.{segment(claims())}.") == (
        "bearer: header is not base64url JSON")


# --- the signing key file -----------------------------------------------------------------------------


def test_signing_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = tokens.load_or_create_signing_key(data_dir)
    path = data_dir / "signing-key"
    assert len(first.reveal()) == 32
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert tokens.load_or_create_signing_key(data_dir) == first
    assert repr(first) == "Secret('**********')"
    assert tokens.load_or_create_signing_key(tmp_path / "other") != first


def test_signing_key_missing_without_create(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="does not exist"):
        tokens.load_or_create_signing_key(tmp_path, create=False)


def test_the_clock_defaults_to_now() -> None:
    token = issue_token(SECRET, "a", "reader", "/", 600)
    assert verifier().verify(token).sub == "a"
    assert reason_of(verifier(), token, now=time.time() + 3600) == "bearer: expired"

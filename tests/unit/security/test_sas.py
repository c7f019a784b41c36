from __future__ import annotations

import base64
import datetime as dt

import pytest

from tenant_access.security import sas
from tenant_access.security.errors import InvalidCredential
from tenant_access.security.secret import Secret
from tests.unit.security.hostile import garbage_inputs

UID = "53dd860e1b72ff0467030003"
KEY = "rwrN5hOvS8a5o2sYQV/jsQikcyzJ5yMGuq3h4vrcaiDGoFWsbase64=="
EXPIRY = dt.datetime(2014, 8, 4, 22, 3, tzinfo=dt.UTC)
BEFORE = dt.datetime(2014, 8, 4, 22, 0, tzinfo=dt.UTC)
# Computed independently of this code base:
#   printf '53dd860e1b72ff0467030003\n2014-08-04T22:03:00.0000000Z' \
#     | openssl dgst -sha512 -hmac "$KEY" -binary | base64 -w0
GOLDEN_SN = "v9prAG+Ldx8gcoGcAP6yvFgVHHHX2+fQn/cmnQH/1cfzODcZ2p8GfBY5OLjJoHNrk1a28Oi/q/oI0aRol7UqQw=="
# printf 'integration\n2018-08-02T05:00:00.0000000Z' | openssl dgst -sha512 -hmac 'k€y' -binary | base64 -w0
GOLDEN_SHORT_SN = "x50T3gCpUR16Q8gynMaf1o94asCGmD/YcVGwBCeiJ2klCfyno/12SEBHi8N9guYV+yzoWva5Xx384fUVhKTGyA=="


def test_make_sas_matches_the_documented_format_and_an_independent_hmac() -> None:
    header = sas.make_sas(UID, KEY, EXPIRY)
    assert header == f"SharedAccessSignature uid={UID}&ex=2014-08-04T22:03:00.0000000Z&sn={GOLDEN_SN}"


def test_key_is_used_as_utf8_text_not_base64_decoded() -> None:
    decoded_key = base64.b64decode(KEY)
    assert sas.sign(UID, KEY, "2014-08-04T22:03:00.0000000Z") == base64.b64decode(GOLDEN_SN)
    as_if_decoded = sas.sign(UID, decoded_key.decode("latin-1"), "2014-08-04T22:03:00.0000000Z")
    assert as_if_decoded != base64.b64decode(GOLDEN_SN)


def test_short_form_signs_the_long_expiry_spelling_with_a_non_ascii_key() -> None:
    expiry = dt.datetime(2018, 8, 2, 5, 0, 59, 999, tzinfo=dt.UTC)
    header = sas.make_sas("integration", "k€y", expiry, short=True)
    assert header == f"SharedAccessSignature integration&201808020500&{GOLDEN_SHORT_SN}"


@pytest.mark.parametrize(("when", "text"), [
    (dt.datetime(2014, 8, 4, 22, 3, tzinfo=dt.UTC), "2014-08-04T22:03:00.0000000Z"),
    (dt.datetime(2020, 10, 2, 15, 11, 42, 71342, tzinfo=dt.UTC), "2020-10-02T15:11:42.0713420Z"),
    (dt.datetime(2020, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2019-12-31T23:00:00.0000000Z"),
    (dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC), "9999-12-31T23:59:59.9999990Z"),
])
def test_format_expiry_is_dotnet_round_trip_in_utc(when: dt.datetime, text: str) -> None:
    assert sas.format_expiry(when) == text


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        sas.format_expiry(dt.datetime(2020, 1, 1))  # naive on purpose
    token = sas.parse_sas(sas.make_sas(UID, KEY, EXPIRY))
    with pytest.raises(ValueError, match="timezone"):
        sas.verify_sas(token, [("p", KEY)], dt.datetime(2014, 1, 1))


@pytest.mark.parametrize("uid", ["", "a&b", "a=b", "a b", "a\nb", "x" * 257])
def test_make_sas_refuses_identifiers_that_would_not_parse(uid: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        sas.make_sas(uid, KEY, EXPIRY)


def test_parse_long_form_with_and_without_scheme() -> None:
    header = sas.make_sas(UID, KEY, EXPIRY)
    bare = header.removeprefix("SharedAccessSignature ")
    for text in (header, bare, "sharedaccesssignature  " + bare):
        token = sas.parse_sas(text)
        assert token.uid == UID
        assert token.expiry == EXPIRY
        assert token.raw_ex == "2014-08-04T22:03:00.0000000Z"
        assert token.signature == base64.b64decode(GOLDEN_SN)
        assert token.form == "long"


def test_parse_accepts_fields_in_any_order() -> None:
    token = sas.parse_sas(f"sn={GOLDEN_SN}&ex=2014-08-04T22:03:00.0000000Z&uid={UID}")
    assert sas.verify_sas(token, [("p", KEY)], BEFORE) == "p"


def test_parse_short_form() -> None:
    token = sas.parse_sas(f"SharedAccessSignature integration&201808020500&{GOLDEN_SHORT_SN}")
    assert token.form == "short"
    assert token.uid == "integration"
    assert token.raw_ex == "201808020500"
    assert token.expiry == dt.datetime(2018, 8, 2, 5, 0, tzinfo=dt.UTC)
    assert sas.verify_sas(token, [("v1", "k€y")], dt.datetime(2018, 8, 2, 4, 59, tzinfo=dt.UTC)) == "v1"


def test_short_form_signed_over_the_literal_short_expiry_also_verifies() -> None:
    signature = base64.b64encode(sas.sign("integration", KEY, "201808020500")).decode()
    token = sas.parse_sas(f"integration&201808020500&{signature}")
    assert sas.verify_sas(token, [("v1", KEY)], dt.datetime(2018, 8, 1, tzinfo=dt.UTC)) == "v1"


def test_the_signature_is_checked_over_ex_as_sent() -> None:
    # Three fractional digits instead of seven: a client's own formatting still verifies...
    raw_ex = "2014-08-04T22:03:00.000Z"
    signature = base64.b64encode(sas.sign(UID, KEY, raw_ex)).decode()
    token = sas.parse_sas(f"uid={UID}&ex={raw_ex}&sn={signature}")
    assert token.expiry == EXPIRY
    assert sas.verify_sas(token, [("p", KEY)], BEFORE) == "p"
    # ...but a signature over one spelling does not cover another spelling of the same instant.
    forged = sas.parse_sas(f"uid={UID}&ex=2014-08-04T22:03:00Z&sn={signature}")
    with pytest.raises(InvalidCredential):
        sas.verify_sas(forged, [("p", KEY)], BEFORE)


def test_verify_returns_which_key_version_matched() -> None:
    primary, secondary = "primary-key", "secondary-key"
    keys: list[tuple[str, str | Secret[str]]] = [("v-primary", primary), ("v-secondary", Secret(secondary))]
    by_primary = sas.parse_sas(sas.make_sas(UID, primary, EXPIRY))
    by_secondary = sas.parse_sas(sas.make_sas(UID, secondary, EXPIRY))
    assert sas.verify_sas(by_primary, keys, BEFORE) == "v-primary"
    assert sas.verify_sas(by_secondary, keys, BEFORE) == "v-secondary"
    assert sas.verify_sas(by_secondary, iter(keys), BEFORE) == "v-secondary"  # any iterable


def test_wrong_key_and_no_keys_are_refused() -> None:
    token = sas.parse_sas(sas.make_sas(UID, KEY, EXPIRY))
    with pytest.raises(InvalidCredential):
        sas.verify_sas(token, [("p", KEY + "x"), ("s", KEY[:-1])], BEFORE)
    with pytest.raises(InvalidCredential):
        sas.verify_sas(token, [], BEFORE)


@pytest.mark.parametrize("field", ["uid", "ex", "sn"])
def test_tampering_with_any_field_is_refused(field: str) -> None:
    parts = dict(p.split("=", 1) for p in sas.make_sas(UID, KEY, EXPIRY).split(" ", 1)[1].split("&"))
    if field == "uid":
        parts["uid"] = "53dd860e1b72ff0467030004"
    elif field == "ex":
        parts["ex"] = "2099-08-04T22:03:00.0000000Z"  # extending one's own token
    else:
        signature = bytearray(base64.b64decode(parts["sn"]))
        signature[-1] ^= 1
        parts["sn"] = base64.b64encode(bytes(signature)).decode()
    token = sas.parse_sas("&".join(f"{k}={v}" for k, v in parts.items()))
    with pytest.raises(InvalidCredential):
        sas.verify_sas(token, [("p", KEY)], BEFORE)


def test_expiry_is_checked_at_the_instant() -> None:
    token = sas.parse_sas(sas.make_sas(UID, KEY, EXPIRY))
    assert sas.verify_sas(token, [("p", KEY)], EXPIRY - dt.timedelta(microseconds=1)) == "p"
    for now in (EXPIRY, EXPIRY + dt.timedelta(days=1)):
        with pytest.raises(InvalidCredential) as caught:
            sas.verify_sas(token, [("p", KEY)], now)
        assert caught.value.reason == "sas: expired"
    assert sas.verify_sas(token, [("p", KEY)], EXPIRY, leeway=dt.timedelta(seconds=30)) == "p"


def test_far_future_expiry_does_not_overflow() -> None:
    far = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.UTC)
    token = sas.parse_sas(sas.make_sas(UID, KEY, far))
    assert sas.verify_sas(token, [("p", KEY)], BEFORE, leeway=dt.timedelta(days=1)) == "p"


def test_url_encoded_or_form_decoded_signatures_are_accepted() -> None:
    assert "+" in GOLDEN_SN and "/" in GOLDEN_SN
    encoded = GOLDEN_SN.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    for sn in (encoded, GOLDEN_SN.replace("+", " ")):
        token = sas.parse_sas(f"uid={UID}&ex=2014-08-04T22:03:00.0000000Z&sn={sn}")
        assert sas.verify_sas(token, [("p", KEY)], BEFORE) == "p"


def test_signature_is_not_in_repr() -> None:
    token = sas.parse_sas(sas.make_sas(UID, KEY, EXPIRY))
    assert GOLDEN_SN[:20] not in repr(token)
    assert repr(token.signature)[:20] not in repr(token)


@pytest.mark.parametrize("text", [
    "uid=a&ex=2014-08-04T22:03:00.0000000Z",  # no sn
    f"uid=a&ex=2014-08-04T22:03:00.0000000Z&sn={GOLDEN_SN}&x=1",  # extra field
    f"uid=a&uid=b&ex=2014-08-04T22:03:00.0000000Z&sn={GOLDEN_SN}",  # duplicate
    f"uid=&ex=2014-08-04T22:03:00.0000000Z&sn={GOLDEN_SN}",  # empty uid
    f"uid=a&ex=2014-13-04T22:03:00.0000000Z&sn={GOLDEN_SN}",  # month 13
    f"uid=a&ex=2014-08-04T22:03:00.00000000Z&sn={GOLDEN_SN}",  # 8 fractional digits
    f"uid=a&ex=2014-08-04T22:03:00+00:00&sn={GOLDEN_SN}",  # not the round-trip format
    f"uid=a&ex=\uff12\uff10\uff11\uff14-08-04T22:03:00Z&sn={GOLDEN_SN}",  # full-width digits
    "uid=a&ex=2014-08-04T22:03:00.0000000Z&sn=c2hvcnQ=",  # signature too short
    "uid=a&ex=2014-08-04T22:03:00.0000000Z&sn=!!!!",
    f"uid=a\u202e&ex=2014-08-04T22:03:00.0000000Z&sn={GOLDEN_SN}",  # invisible control character
    f"integration&201813020500&{GOLDEN_SHORT_SN}",  # short form, month 13
    f"integration&20180802050&{GOLDEN_SHORT_SN}",  # short form, 11 digits
    "Bearer abc",
    "SharedAccessSignature",
])
def test_malformed_tokens_raise_the_one_error(text: str) -> None:
    with pytest.raises(InvalidCredential) as caught:
        sas.parse_sas(text)
    assert caught.value.message == InvalidCredential.PUBLIC_MESSAGE
    assert GOLDEN_SN not in caught.value.reason


@pytest.mark.parametrize("text", garbage_inputs(seed=7))
def test_garbage_never_crashes(text: str) -> None:
    with pytest.raises(InvalidCredential):
        sas.parse_sas(text)


def test_non_text_is_refused() -> None:
    with pytest.raises(InvalidCredential):
        sas.parse_sas(b"uid=a&ex=b&sn=c")  # type: ignore[arg-type]


def test_non_ascii_and_surrogate_keys_and_uids_compare_without_type_errors() -> None:
    # hmac.compare_digest raises TypeError on non-ASCII str; everything must be bytes by then.
    uid = "intégration"
    token = sas.parse_sas(sas.make_sas(uid, "ключ", EXPIRY))
    assert sas.verify_sas(token, [("a", "\udc80"), ("b", "ключ")], BEFORE) == "b"

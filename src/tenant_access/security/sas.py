"""Shared access signatures exactly as Azure API Management's direct management API uses them.

Source: "Authenticate to the direct management Azure API Management REST API",
https://learn.microsoft.com/rest/api/apimanagement/apimanagementrest/azure-api-management-rest-api-authentication
(summarised in ``azure-facts.md`` §10)::

    Authorization: SharedAccessSignature uid={identifier}&ex={expiry}&sn={signature}
    signature = base64(HMAC-SHA512(key=UTF-8 bytes of the key *string*, msg="{identifier}\\n{expiry}"))
    expiry    = .NET round-trip format "yyyy-MM-ddTHH:mm:ss.fffffffZ" (UTC, 7 fractional digits)

The portal also issues a short form, ``{identifier}&{yyyyMMddHHmm}&{signature}``, and the page says
both are accepted, but not what the short form signs. We sign and accept the long expiry string for
it (``2018-08-02T05:00:00.0000000Z`` for ``201808020500``), which is what every documented
generator signs, and also accept a signature over the literal short string, since that is the only
other reading. Both readings need the key, so accepting two costs nothing in security.

The signature is always checked against the ``ex`` text *as received*, never a re-formatted expiry,
so a client whose clock formatting differs slightly from ours still verifies.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import unquote

from tenant_access.security.errors import InvalidCredential
from tenant_access.security.secret import Secret, plain

SCHEME = "SharedAccessSignature"
SIGNATURE_BYTES = 64  # HMAC-SHA512
MAX_HEADER_CHARS = 2048  # a real one is under 200; anything huge is an attack, not a token
MAX_UID_CHARS = 256

K = TypeVar("K")

_LONG_EXPIRY = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?Z", re.ASCII)
_SHORT_EXPIRY = re.compile(r"\d{12}", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}", re.ASCII)


@dataclass(frozen=True, slots=True)
class SasToken:
    """A parsed, *not yet verified* shared access signature.

    ``signature`` is left out of ``repr``: with ``uid`` and ``raw_ex`` it is a working credential.
    """

    uid: str
    expiry: _dt.datetime  # timezone-aware UTC
    signature: bytes = field(repr=False)
    raw_ex: str  # the expiry exactly as sent; what the signature covers
    form: Literal["long", "short"] = "long"

    def signed_strings(self) -> tuple[str, ...]:
        """Every string this token's signature may have been computed over, most likely first."""
        if self.form == "long":
            return (f"{self.uid}\n{self.raw_ex}",)
        return (f"{self.uid}\n{format_expiry(self.expiry)}", f"{self.uid}\n{self.raw_ex}")


def format_expiry(expiry: _dt.datetime) -> str:
    """.NET's round-trip (``"O"``) format of a UTC instant: ``2014-08-04T22:03:00.0000000Z``."""
    if expiry.tzinfo is None:
        raise ValueError("the expiry must be timezone-aware; a naive datetime is ambiguous")
    utc = expiry.astimezone(_dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"


def sign(uid: str, key: str | Secret[str], raw_ex: str) -> bytes:
    """The 64-byte HMAC-SHA512 of ``"{uid}\\n{ex}"`` under the key's UTF-8 text (not its base64 decoding)."""
    return hmac.new(_utf8(plain(key)), _utf8(f"{uid}\n{raw_ex}"), hashlib.sha512).digest()


def make_sas(uid: str, key: str | Secret[str], expiry: _dt.datetime, *, short: bool = False) -> str:
    """The complete ``Authorization`` header value, scheme included, as the portal shows it.

    ``short=True`` gives the portal's ``{uid}&{yyyyMMddHHmm}&{sig}`` form; the expiry is then cut
    to the minute (rounded down) and the long spelling of that minute is what gets signed.
    """
    if not _uid_ok(uid):
        raise ValueError("a SAS identifier is 1 to 256 printable characters without '&', '=' or spaces")
    if short:
        minute = expiry.astimezone(_dt.UTC).replace(second=0, microsecond=0)
        signature = base64.b64encode(sign(uid, key, format_expiry(minute))).decode("ascii")
        return f"{SCHEME} {uid}&{minute.strftime('%Y%m%d%H%M')}&{signature}"
    raw_ex = format_expiry(expiry)
    signature = base64.b64encode(sign(uid, key, raw_ex)).decode("ascii")
    return f"{SCHEME} uid={uid}&ex={raw_ex}&sn={signature}"


def parse_sas(header_value: str) -> SasToken:
    """Parse either form, with or without the leading ``SharedAccessSignature`` scheme.

    Raises :class:`InvalidCredential` for anything malformed; checks neither signature nor expiry.
    """
    if not isinstance(header_value, str):
        raise InvalidCredential("sas: not text")
    if len(header_value) > MAX_HEADER_CHARS:
        raise InvalidCredential("sas: too long")
    value = header_value.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == SCHEME.lower():
        value = rest.strip()
    parts = value.split("&")
    if len(parts) == 3 and "=" not in parts[0] and _SHORT_EXPIRY.fullmatch(parts[1]):
        uid, raw_ex, sn = parts
        return SasToken(uid=_check_uid(uid), expiry=_parse_short_expiry(raw_ex),
                        signature=_decode_signature(sn), raw_ex=raw_ex, form="short")
    fields: dict[str, str] = {}
    for part in parts:
        name, sep, text = part.partition("=")
        name = name.lower()
        if not sep or name not in ("uid", "ex", "sn") or name in fields:
            raise InvalidCredential("sas: expected exactly uid=, ex= and sn=")
        fields[name] = text
    if len(fields) != 3:
        raise InvalidCredential("sas: expected exactly uid=, ex= and sn=")
    return SasToken(uid=_check_uid(fields["uid"]), expiry=_parse_long_expiry(fields["ex"]),
                    signature=_decode_signature(fields["sn"]), raw_ex=fields["ex"], form="long")


def check_expiry(token: SasToken, now: _dt.datetime, *, leeway: _dt.timedelta = _dt.timedelta(0),
                 max_lifetime: _dt.timedelta | None = None) -> None:
    """:class:`InvalidCredential` when ``token`` has expired, or expires further ahead than
    ``max_lifetime``: checks that need no key, so callers can make them before looking anything up
    (and fail alike whether or not the service exists)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if now - leeway >= token.expiry:  # not expiry + leeway: that overflows for year 9999
        raise InvalidCredential("sas: expired")
    if max_lifetime is not None and token.expiry - now > max_lifetime:
        raise InvalidCredential("sas: expiry too far ahead")


def verify_sas(
    token: SasToken,
    keys: Iterable[tuple[K, str | Secret[str]]],
    now: _dt.datetime,
    *,
    leeway: _dt.timedelta = _dt.timedelta(0),
    max_lifetime: _dt.timedelta | None = None,
) -> K:
    """The id of the key that signed ``token``, or :class:`InvalidCredential`.

    ``keys`` are ``(key_version_id, key)`` pairs of the access configuration whose principal id is
    ``token.uid`` (normally its current primary and secondary); resolving ``uid`` to those keys, and
    refusing disabled configurations, is the caller's job. Returning the id lets the caller record
    whether the primary or the secondary was used. Every key is compared, in constant time, even
    after a match, so timing does not reveal which slot matched or how many keys there are.

    ``max_lifetime``: how far ahead of ``now`` the expiry may lie. A signature made for year 9999
    is a key that never expires, whatever rotation the operator believes protects them; Azure caps
    user tokens of this API at 30 days, and so does the server by default.
    """
    check_expiry(token, now, leeway=leeway, max_lifetime=max_lifetime)
    candidates = token.signed_strings()
    matched: list[K] = []
    for key_id, key in keys:
        key_bytes = _utf8(plain(key))
        for signed in candidates:
            expected = hmac.new(key_bytes, _utf8(signed), hashlib.sha512).digest()
            if hmac.compare_digest(expected, token.signature):
                matched.append(key_id)
    if not matched:
        raise InvalidCredential("sas: signature matches no current key")
    return matched[0]


def _utf8(text: str) -> bytes:
    # surrogatepass: a lone surrogate (possible from lenient decoders upstream) must fail the
    # comparison, not raise UnicodeEncodeError out of the authentication path.
    return text.encode("utf-8", "surrogatepass")


def _uid_ok(uid: str) -> bool:
    return 0 < len(uid) <= MAX_UID_CHARS and uid.isprintable() and not any(c in uid for c in "&= ")


def _check_uid(uid: str) -> str:
    if not _uid_ok(uid):
        raise InvalidCredential("sas: malformed uid")
    return uid


def _parse_long_expiry(raw: str) -> _dt.datetime:
    match = _LONG_EXPIRY.fullmatch(raw)
    if match is None:
        raise InvalidCredential("sas: malformed expiry")
    year, month, day, hour, minute, second, fraction = match.groups()
    micro = int((fraction or "0").ljust(7, "0")[:6])
    try:
        return _dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro,
                            tzinfo=_dt.UTC)
    except ValueError:
        raise InvalidCredential("sas: malformed expiry") from None


def _parse_short_expiry(raw: str) -> _dt.datetime:
    try:
        return _dt.datetime.strptime(raw, "%Y%m%d%H%M").replace(tzinfo=_dt.UTC)
    except ValueError:
        raise InvalidCredential("sas: malformed expiry") from None


def _decode_signature(text: str) -> bytes:
    # Some clients URL-encode the signature (or a form decoder turned its '+' into ' '). Undoing
    # that is harmless: the signature is compared, never signed.
    if "%" in text:
        text = unquote(text)
    text = text.replace(" ", "+")
    if not _BASE64.fullmatch(text):
        raise InvalidCredential("sas: malformed signature")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidCredential("sas: malformed signature") from None
    if len(raw) != SIGNATURE_BYTES:
        raise InvalidCredential("sas: malformed signature")
    return raw

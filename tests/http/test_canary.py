"""Key material never leaks: known keys are planted, every endpoint and error path is driven with
debug logging, then logs, bodies, audit records and the raw database are searched for them."""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from pathlib import Path

import httpx

from tenant_access.security.sas import make_sas
from tests.backends import Backend
from tests.conftest import API, SERVICE_BODY, service_path


def _forms(key: str) -> list[bytes]:
    raw = key.encode()
    return [raw, base64.b64encode(raw), raw.hex().encode(), raw.hex().upper().encode(),
            base64.urlsafe_b64encode(raw)]


def test_keys_appear_nowhere_but_list_secrets(db_backend: Backend, tmp_path: Path) -> None:
    server = db_backend.server(tmp_path / "data", ["--log-level", "debug"]).start()
    primary = "CanaryPrimary" + secrets.token_hex(16)
    secondary = "CanarySecondary" + secrets.token_hex(16)
    seen_keys = {primary, secondary}
    bodies: list[bytes] = []
    path = service_path("canary")
    access = f"{path}/tenant/access"
    try:
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            def call(method: str, url: str, **kwargs: object) -> httpx.Response:
                response = http.request(method, url, **kwargs)  # type: ignore[arg-type]
                if not url.split("?", maxsplit=1)[0].endswith("/listSecrets"):
                    bodies.append(response.content + str(response.headers).encode())
                return response

            call("PUT", f"{path}?{API}", json=SERVICE_BODY)
            planted = call("PUT", f"{access}?{API}", headers={"If-Match": "*"},
                           json={"properties": {"primaryKey": primary, "secondaryKey": secondary, "enabled": True}})
            assert planted.status_code == 200
            # Error paths that carry the key in the request: bad bodies, stale tags, bad credentials.
            call("PUT", f"{access}?{API}", headers={"If-Match": '"stale"'},
                 json={"properties": {"primaryKey": primary}})
            call("PATCH", f"{access}?{API}", headers={"If-Match": "*"}, json={"properties": {"primaryKey": primary}})
            call("PUT", f"{access}?{API}", headers={"If-Match": "*"}, content=b'{"properties": {"primaryKey": "'
                 + primary.encode() + b'"')
            call("PUT", f"{access}?{API}", headers={"If-Match": "*", "content-type": "text/plain"}, content=primary)
            call("GET", f"{access}?{API}", headers={"Authorization": f"Bearer {primary}"})
            call("GET", f"{access}?{API}", headers={"Authorization": f"SharedAccessSignature {primary}"})
            soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
            with httpx.Client(base_url=server.url) as anon:
                for key in (primary, secondary, "wrong" + primary):
                    bodies.append(anon.get(f"{access}?{API}",
                                           headers={"Authorization": make_sas("integration", key, soon)}).content)
            # Every operation, including the regenerations whose new keys we learn only from listSecrets.
            for suffix in ("regeneratePrimaryKey", "regenerateSecondaryKey", "git/regeneratePrimaryKey",
                           "git/regenerateSecondaryKey"):
                call("POST", f"{access}/{suffix}?{API}")
                for name in ("access", "gitAccess"):
                    keys = call("POST", f"{path}/tenant/{name}/listSecrets?{API}").json()["data"]
                    seen_keys |= {keys["primary_key"], keys["secondary_key"]}
            for method, url in (("GET", f"{path}?{API}"), ("GET", f"{path}/tenant?{API}"), ("HEAD", f"{access}?{API}"),
                                ("GET", f"{access}?{API}"), ("GET", f"{path}/auditEvents?{API}"),
                                ("PATCH", f"{access}?{API}"), ("GET", f"{access}/nope?{API}"),
                                ("DELETE", f"{access}?{API}"), ("GET", f"{access}"), ("GET", "/openapi.json")):
                call(method, url, headers={"If-Match": "*"})
            audit = http.get(f"{path}/auditEvents?{API}").content
            assert b"list_secrets" in audit
            bodies.append(audit)
    finally:
        server.stop()
    stores = [server.database.dump()]
    assert stores[0]
    haystacks = {"log": server.log().encode(), "responses": b"\n".join(bodies), "database": b"\n".join(stores)}
    assert b"DEBUG" in haystacks["log"]  # debug logging really was on
    for key in seen_keys:
        for form in _forms(key):
            for where, haystack in haystacks.items():
                assert form not in haystack, f"a key leaked into the {where}"

"""/metrics after known sequences of calls: exact counts, bounded labels, access policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tenant_access.config import Settings
from tenant_access.http.app import create_app
from tenant_access.metrics import AUTH_REASONS, Metrics, auth_reason, auth_scheme
from tenant_access.security.tokens import issue_token, load_or_create_signing_key
from tests.backends import DbServer
from tests.conftest import API, SERVICE_BODY, service_path
from tests.serverproc import ServerProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests(samples: Samples, operation: str, status: int) -> float:
    return value(samples, "tenant_access_requests_total", operation=operation, status=str(status))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own: its counters start at zero and see only this module's calls."""
    made = ServerProcess(tmp_path_factory.mktemp("metrics")).start()
    yield made
    made.stop()


def test_counts_after_a_known_sequence(server: ServerProcess) -> None:
    name = "metrics-svc"
    path = service_path(name)
    access = f"{path}/tenant/access"
    expired = issue_token(load_or_create_signing_key(server.data_dir, create=False), "old", "owner", "/", 1,
                          now=time.time() - 7200, iss=server.issuer)
    owner = {"Authorization": f"Bearer {server.token(sub='metrics-principal')}"}
    with httpx.Client(base_url=server.url, headers=owner) as http:
        assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
        for _ in range(3):
            assert http.get(f"{access}?{API}").status_code == 200
        for _ in range(2):
            assert http.post(f"{access}/regenerateSecondaryKey?{API}").status_code == 200
        assert http.post(f"{access}/git/regeneratePrimaryKey?{API}").status_code == 200
        assert http.post(f"{path}/tenant/gitAccess/regenerateSecondaryKey?{API}").status_code == 200
        secrets = http.post(f"{access}/listSecrets?{API}").json()["data"]
        assert http.get(f"{service_path('missing-svc')}?{API}").status_code == 404
        assert http.get("/no/such/route").status_code == 404
        assert http.patch(f"{access}?{API}", json={"properties": {"enabled": True}},
                          headers={"If-Match": '"stale"'}).status_code == 412
    with httpx.Client(base_url=server.url) as anon:
        assert anon.get(f"{access}?{API}").status_code == 401
        assert anon.get(f"{access}?{API}", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
        assert anon.get(f"{access}?{API}", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
        assert anon.get(f"{access}?{API}", headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401
        old_sas = "SharedAccessSignature uid=integration&ex=2000-01-01T00:00:00.0000000Z&sn=" + "A" * 86 + "=="
        assert anon.get(f"{access}?{API}", headers={"Authorization": old_sas}).status_code == 401
        text = anon.get("/metrics").text  # from loopback: no credential needed by default

    samples = scrape(text)
    assert requests(samples, "services.create_or_update", 201) == 1
    assert requests(samples, "access.get", 200) == 3
    assert requests(samples, "access.get", 401) == 5
    assert requests(samples, "access.regenerate_secondary_key", 200) == 3
    assert requests(samples, "access.git_regenerate_primary_key", 200) == 1
    assert requests(samples, "access.list_secrets", 200) == 1
    assert requests(samples, "services.get", 404) == 1
    assert requests(samples, "unmatched", 404) == 1
    assert requests(samples, "access.update", 412) == 1
    # The histogram counts the same requests, with the same labels.
    assert value(samples, "tenant_access_request_duration_seconds_count", operation="access.get", status="200") == 3
    assert value(samples, "tenant_access_request_duration_seconds_bucket", operation="access.get", status="200",
                 le="+Inf") == 3
    assert value(samples, "tenant_access_request_duration_seconds_sum", operation="access.get", status="200") > 0
    rotations = {(c, s): value(samples, "tenant_access_key_rotations_total", configuration=c, slot=s)
                 for c in ("access", "gitAccess") for s in ("primary", "secondary")}
    assert rotations == {("access", "primary"): 0, ("access", "secondary"): 2,
                         ("gitAccess", "primary"): 1, ("gitAccess", "secondary"): 1}
    failures = {labels: v for (metric, labels), v in samples.items()
                if metric == "tenant_access_authentication_failures_total"}
    assert failures == {
        (("reason", "missing"), ("scheme", "none")): 1,
        (("reason", "malformed"), ("scheme", "bearer")): 1,
        (("reason", "expired"), ("scheme", "bearer")): 1,
        (("reason", "unsupported_scheme"), ("scheme", "other")): 1,
        # Expired whether or not access is enabled (it starts disabled, as in Azure): checked first.
        (("reason", "expired"), ("scheme", "sas")): 1,
    }
    assert value(samples, "tenant_access_database_errors_total", kind="unavailable") == 0
    assert value(samples, "tenant_access_database_errors_total", kind="failed") == 0
    assert value(samples, "tenant_access_build_info", version=_version(), api_style="seed", auth="strict") == 1

    # No label carries anything a caller chose: no service names, principals, paths, addresses or keys.
    forbidden = [name, "missing-svc", "metrics-principal", "/subscriptions", "127.0.0.1", "/no/such",
                 secrets["primary_key"], secrets["secondary_key"], "integration"]
    for (_, labels), _v in samples.items():
        for _label, text_value in labels:
            assert not any(bad in text_value for bad in forbidden), labels
    assert secrets["primary_key"] not in text and secrets["secondary_key"] not in text


def _version() -> str:
    from tenant_access import __version__

    return __version__


def test_metrics_answer_in_the_prometheus_text_format(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["cache-control"] == "no-store"
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert {"tenant_access_requests", "tenant_access_request_duration_seconds", "tenant_access_key_rotations",
            "tenant_access_authentication_failures", "tenant_access_database_errors",
            "tenant_access_build_info"} <= families
    assert "_created" not in response.text  # the extra timestamp series are switched off


def test_database_errors_are_counted_by_kind(fresh_server: DbServer) -> None:
    path = service_path("db-fault")
    with httpx.Client(base_url=fresh_server.url, headers=fresh_server.auth()) as http:
        assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
        fresh_server.database.refuse_inserts("audit_events")
        statuses = [http.post(f"{path}/tenant/access/regenerateSecondaryKey?{API}").status_code for _ in range(2)]
        fresh_server.database.allow_inserts("audit_events")
        assert http.post(f"{path}/tenant/access/regenerateSecondaryKey?{API}").status_code == 200
        samples = scrape(http.get("/metrics").text)
    assert all(s >= 500 for s in statuses)
    expected = {"unavailable": statuses.count(503), "failed": len(statuses) - statuses.count(503)}
    assert {k: value(samples, "tenant_access_database_errors_total", kind=k) for k in expected} == expected
    # The refused regenerations were not rotations; the one that worked was.
    assert value(samples, "tenant_access_key_rotations_total", configuration="access", slot="secondary") == 1


# -- who may scrape ----------------------------------------------------------------------------------


def _scrape_from(settings: Settings, client: str, headers: dict[str, str] | None = None) -> int:
    """One in-process request from a chosen client address (a real socket would always be loopback)."""

    async def run() -> int:
        app = create_app(settings)
        await app.startup()
        try:
            transport = httpx.ASGITransport(app=app, client=(client, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://metrics.test") as http:
                return (await http.get("/metrics", headers=headers or {})).status_code
        finally:
            await app.shutdown()

    return asyncio.run(run())


def _token(data_dir: Path, scope: str = "/", role: str = "reader") -> dict[str, str]:
    issuer = Settings(data_dir=data_dir).base_url
    return {"Authorization": "Bearer " + issue_token(load_or_create_signing_key(data_dir), "scraper", role, scope, 600,
                                                     iss=issuer)}


@pytest.mark.parametrize(("mode", "client", "credential", "status"), [
    ("loopback", "127.0.0.1", None, 200),
    ("loopback", "::1", None, 200),
    ("loopback", "10.1.2.3", None, 401),
    ("loopback", "10.1.2.3", "/", 200),
    ("loopback", "10.1.2.3", "/subscriptions/11111111-2222-3333-4444-555555555555", 403),
    ("public", "10.1.2.3", None, 200),
    ("auth", "127.0.0.1", None, 401),
    ("auth", "127.0.0.1", "/", 200),
    ("off", "127.0.0.1", None, 404),
])
def test_who_may_scrape(tmp_path: Path, mode: str, client: str, credential: str | None, status: int) -> None:
    settings = Settings(data_dir=tmp_path, metrics=mode)
    headers = _token(tmp_path, credential) if credential else None
    assert _scrape_from(settings, client, headers) == status


def test_metrics_setting_from_the_environment() -> None:
    assert Settings.from_env({"TENANT_ACCESS_METRICS": "public"}).metrics == "public"
    with pytest.raises(ValueError, match="metrics must be one of"):
        Settings(metrics="everyone")


# -- label classes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "expected"), [
    ("no credential", "missing"),
    ("Bearer without a credential", "missing"),
    ("unsupported authorization scheme", "unsupported_scheme"),
    ("authorization header too long", "oversized"),
    ("bearer: too long", "oversized"),
    ("bearer: expired", "expired"),
    ("sas: expired", "expired"),
    ("bearer: not yet valid (nbf)", "not_yet_valid"),
    ("bearer: issued in the future (iat)", "not_yet_valid"),
    ("bearer: signature matches no key", "bad_signature"),
    ("sas: signature matches no current key", "rejected"),
    ("bearer: rejected by JWS check (InvalidSignatureError)", "bad_signature"),
    ("bearer: algorithm not accepted", "unknown_key"),
    ("bearer: no RS256 key with that kid", "unknown_key"),
    ("bearer: no ES256 key", "unknown_key"),
    ("bearer: audience not accepted", "audience"),
    ("bearer: issuer not accepted", "issuer"),
    ("sas: no enabled access configuration", "rejected"),
    ("sas: uid is not the configuration's principal id", "rejected"),
    ("sas: this route is not a service's", "rejected"),
    ("bearer: no role", "claims"),
    ("bearer: no exp", "claims"),
    ("bearer: exp is not a number", "claims"),
    ("bearer: malformed (DecodeError)", "malformed"),
    ("sas: malformed expiry", "malformed"),
    ("bearer: payload is not base64url JSON", "malformed"),
    ("something nobody wrote yet", "malformed"),
])
def test_failure_reasons_fall_into_a_closed_set(reason: str, expected: str) -> None:
    assert auth_reason(reason) == expected
    assert expected in AUTH_REASONS


@pytest.mark.parametrize(("header", "expected"), [
    (None, "none"), ("", "none"), ("Bearer x", "bearer"), ("bearer x", "bearer"),
    ("SharedAccessSignature uid=a", "sas"), ("Basic x", "other"), ("x" * 5000, "other"),
])
def test_schemes_fall_into_a_closed_set(header: str | None, expected: str) -> None:
    assert auth_scheme(header) == expected


def test_only_errors_raised_in_the_store_count_as_database_errors() -> None:
    from tenant_access.domain.errors import InternalError, ServiceUnavailable

    metrics = Metrics()
    namespace: dict[str, object] = {"__name__": "tenant_access.storage.fake", "ServiceUnavailable": ServiceUnavailable}
    exec("def fail():\n    raise ServiceUnavailable('busy')\n", namespace)  # a function "of the storage package"
    try:
        namespace["fail"]()  # type: ignore[operator]
    except ServiceUnavailable as exc:
        metrics.failure(exc, 503)
    try:
        raise InternalError("not the store's")
    except InternalError as exc:
        metrics.failure(exc, 500)
    try:
        try:
            namespace["fail"]()  # type: ignore[operator]
        except ServiceUnavailable as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as exc:
        metrics.failure(exc, 500)
    samples = scrape(metrics.exposition().decode())
    assert value(samples, "tenant_access_database_errors_total", kind="unavailable") == 1
    assert value(samples, "tenant_access_database_errors_total", kind="failed") == 1


# -- no existence oracle -------------------------------------------------------------------------


def test_a_refused_sas_says_nothing_about_the_service_in_its_labels(tmp_path: Path) -> None:
    """A SAS for a service that does not exist, one with a bad signature, one with another principal
    id and one for a service whose access is disabled all get the same 401; the metrics a loopback
    scraper reads must not tell them apart either (they once said sas_not_usable / bad_signature)."""
    import datetime as dt

    from tenant_access.security.sas import make_sas

    server = ServerProcess(tmp_path / "data").start()
    try:
        enabled, disabled = service_path("oracle-enabled"), service_path("oracle-disabled")
        with httpx.Client(base_url=server.url, headers=server.auth()) as http:
            for path in (enabled, disabled):
                assert http.put(f"{path}?{API}", json=SERVICE_BODY).status_code == 201
            assert http.patch(f"{enabled}/tenant/access?{API}", json={"properties": {"enabled": True}},
                              headers={"If-Match": "*"}).status_code == 200
            uid = http.get(f"{enabled}/tenant/access?{API}").json()["data"]["principal_id"]
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        wrong_key = make_sas(uid, "not-the-key-" + "x" * 40, expiry)
        probes = {
            "missing service": (service_path("oracle-missing"), wrong_key),
            "bad signature": (enabled, wrong_key),
            "other principal id": (enabled, make_sas("someone-else", "k" * 40, expiry)),
            "access disabled": (disabled, wrong_key),
        }
        changes = {}
        with httpx.Client(base_url=server.url) as anon:
            for name, (path, header) in probes.items():
                before = scrape(anon.get("/metrics").text)
                assert anon.get(f"{path}/tenant/access?{API}", headers={"Authorization": header}).status_code == 401
                after = scrape(anon.get("/metrics").text)
                changes[name] = {key: after[key] - before.get(key, 0.0) for key in after
                                 if key[0].startswith(("tenant_access_authentication_failures",
                                                       "tenant_access_requests_total"))
                                 and after[key] != before.get(key, 0.0)}
    finally:
        server.stop()
    first = changes["missing service"]
    assert first, "the refusal was counted"
    assert all(change == first for change in changes.values()), changes

"""Optimistic concurrency: a stale If-Match is refused and changes nothing; ``*`` matches any."""

from __future__ import annotations

import httpx

from tests.conftest import API


def test_stale_if_match_is_refused_and_changes_nothing(http: httpx.Client, service: str) -> None:
    path = f"{service}/tenant/access"
    stale = http.get(f"{path}?{API}").headers["etag"]
    http.post(f"{path}/regenerateSecondaryKey?{API}")  # a regeneration changes the entity tag
    before = http.post(f"{path}/listSecrets?{API}").json()["data"]
    for method, body in (("PATCH", {"properties": {"enabled": True}}),
                         ("PUT", {"properties": {"enabled": True, "principalId": "someone"}})):
        response = http.request(method, f"{path}?{API}", json=body, headers={"If-Match": stale})
        assert response.status_code == 412
        assert response.json()["error"]["code"] == "PRECONDITION_FAILED"
    assert http.post(f"{path}/listSecrets?{API}").json()["data"] == before


def test_current_etag_quoted_or_not_and_star_match(http: httpx.Client, service: str) -> None:
    path = f"{service}/tenant/access"
    etag = http.get(f"{path}?{API}").headers["etag"]
    ok = http.patch(f"{path}?{API}", json={"properties": {"enabled": True}}, headers={"If-Match": etag})
    assert ok.status_code == 200
    bare = ok.headers["etag"].strip('"')
    ok = http.patch(f"{path}?{API}", json={"properties": {"enabled": False}}, headers={"If-Match": bare})
    assert ok.status_code == 200
    listed = f'"nope", {ok.headers["etag"]}'
    assert http.patch(f"{path}?{API}", json={"properties": {"enabled": True}},
                      headers={"If-Match": listed}).status_code == 200
    assert http.patch(f"{path}?{API}", json={"properties": {"enabled": False}},
                      headers={"If-Match": "*"}).status_code == 200


def test_etag_changes_on_every_change_and_only_then(http: httpx.Client, service: str) -> None:
    path = f"{service}/tenant/access"
    seen = [http.head(f"{path}?{API}").headers["etag"]]
    http.post(f"{path}/regeneratePrimaryKey?{API}")
    seen.append(http.head(f"{path}?{API}").headers["etag"])
    http.patch(f"{path}?{API}", json={"properties": {"enabled": True}}, headers={"If-Match": "*"})
    seen.append(http.head(f"{path}?{API}").headers["etag"])
    assert len(set(seen)) == 3
    # A PATCH that changes nothing keeps the tag; so does reading the secrets.
    same = http.patch(f"{path}?{API}", json={"properties": {"enabled": True}}, headers={"If-Match": "*"})
    http.post(f"{path}/listSecrets?{API}")
    assert same.headers["etag"] == seen[-1] == http.head(f"{path}?{API}").headers["etag"]
    # The other configuration's tag is independent.
    git = http.head(f"{service}/tenant/gitAccess?{API}").headers["etag"]
    http.post(f"{path}/regenerateSecondaryKey?{API}")
    assert http.head(f"{service}/tenant/gitAccess?{API}").headers["etag"] == git

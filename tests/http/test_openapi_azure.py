"""The Azure-format OpenAPI document (served in ``--api-style azure``) describes what the server
really answers: the same calls as test_openapi.py, validated against the Azure document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import API
from tests.http.test_openapi import _validate, documented_calls
from tests.serverproc import ServerProcess


@pytest.fixture(scope="module")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("azure-openapi"), ["--api-style", "azure"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def document(azure_server: ServerProcess) -> dict[str, Any]:
    response = httpx.get(f"{azure_server.url}/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    assert "Azure" in doc["info"]["title"]
    return doc


def test_real_azure_responses_match_the_document(azure_server: ServerProcess, document: dict[str, Any]) -> None:
    calls = documented_calls()
    svc, s_t = calls[0][1], calls[0][2]
    statuses = set()
    with httpx.Client(base_url=azure_server.url, headers=azure_server.auth(), timeout=10) as http:
        for method, url, template, kwargs in calls:
            separator = "&" if "?" in url else "?"
            response = http.request(method, f"{url}{separator}{API}", **kwargs)
            statuses.add(response.status_code)
            _validate(document, template, method, response)
        for path in ("/healthz", "/readyz", "/openapi.json"):
            _validate(document, path, "GET", http.get(path))
        unauthenticated = httpx.get(f"{azure_server.url}{svc}?{API}")
        _validate(document, s_t, "GET", unauthenticated)
    assert statuses >= {200, 201, 204, 400, 404, 409, 412, 415}

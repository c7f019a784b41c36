"""API fuzzing: schemathesis against the served OpenAPI document of each wire format.

Every schemathesis check is on (``--checks all``): server errors, status codes, content types,
response headers and bodies against the document, schema-valid data accepted, schema-invalid data
rejected, missing required headers, unsupported methods (405 with ``Allow``), authentication
ignored, and the resource checks. The run is seeded (``--seed``) so a failure replays exactly;
``tests/reliability/schemathesis.toml`` narrows one check for the two ``If-Match`` operations,
with the reason. The examples, coverage and fuzzing phases run; the stateful phase needs OpenAPI
links the documents do not declare, and test_state_machine.py covers state instead.

Alongside: the documents list exactly the routes the router serves, and the path-parameter patterns
they publish accept exactly what the server's rules accept.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_access.config import Settings
from tenant_access.domain import rules
from tenant_access.domain.errors import Problems
from tenant_access.http import openapi
from tenant_access.http.app import create_app
from tests.conftest import API, SERVICE_BODY, service_path
from tests.serverproc import ServerProcess

STYLES = ("seed", "azure")
CONFIG = Path(__file__).with_name("schemathesis.toml")
#: Examples per operation and phase: about 20 seconds per style on two cores.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
SEED = int(os.environ.get("FUZZ_SEED", "20261127"))


@pytest.fixture(scope="module", params=STYLES)
def fuzz_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # "authentication ignored" sends requests without and with bad credentials on purpose; the
    # per-address failure limit (429 for everyone on 127.0.0.1) would otherwise end the run early.
    server = ServerProcess(tmp_path_factory.mktemp(f"fuzz-{request.param}"),
                           ["--api-style", request.param, "--auth-failures-per-minute", "1000000"]).start()
    # One real service, so that fuzzed requests that name it reach real state (and real 200s).
    with httpx.Client(base_url=server.url, headers=server.auth(), timeout=10) as client:
        assert client.put(f"{service_path('fuzzed')}?{API}", json=SERVICE_BODY).status_code == 201
    yield server
    server.stop()


def _style(server: ServerProcess) -> str:
    return "azure" if "azure" in server.args else "seed"


@pytest.mark.slow
def test_schemathesis_finds_nothing(fuzz_server: ServerProcess, tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    cmd = [
        str(cli), "--config-file", str(CONFIG), "--no-color", "run", f"{fuzz_server.url}/openapi.json",
        "--checks", "all", "--mode", "all", "--phases", "examples,coverage,fuzzing",
        "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
        "--header", f"Authorization: Bearer {fuzz_server.token()}",
        "--request-timeout", "10", "--warnings", "off",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": ""}
    # Run from the temporary directory: schemathesis keeps a cache folder in its working directory.
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False, cwd=tmp_path)
    report = result.stdout[-20000:] + result.stderr[-4000:]
    assert result.returncode == 0, f"schemathesis found problems ({_style(fuzz_server)} format):\n{report}"
    assert "No issues found" in result.stdout, report
    assert "Traceback" not in fuzz_server.log(), fuzz_server.log()[-5000:]


@pytest.mark.parametrize("style", STYLES)
def test_each_document_lists_exactly_the_served_routes(style: str, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, api_style=style))
    doc = openapi.build(app.routes, style)
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(r.path, r.method) for r in app.routes}
    for route in app.routes:
        op = doc["paths"][route.path][route.method.lower()]
        assert op["operationId"] == route.operation
        if route.public:
            assert op["security"] == [], route.operation
        else:
            assert "security" not in op and doc["security"], route.operation  # the global requirement
            assert {"401", "403", "429", "503"} <= set(op["responses"]), route.operation


def test_the_served_document_is_the_active_formats(tmp_path: Path) -> None:
    for style in STYLES:
        server = ServerProcess(tmp_path / style, ["--api-style", style]).start()
        try:
            doc = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
        finally:
            server.stop()
        assert ("Azure" in doc["info"]["title"]) == (style == "azure")
        assert ("ErrorResponse" in doc["components"]["schemas"]) == (style == "azure")


def _doc_parameters(tmp_path: Path) -> dict[str, dict[str, Any]]:
    doc = openapi.build(create_app(Settings(data_dir=tmp_path)).routes, "seed")
    op = doc["paths"][next(p for p in doc["paths"] if p.endswith("{accessName}"))]["get"]
    return {p["name"]: p["schema"] for p in op["parameters"] if p["in"] == "path"}


def _doc_accepts(schema: dict[str, Any], value: str) -> bool:
    import re

    # JSON Schema's "$" is the end of the text: fullmatch is its Python equivalent for these patterns.
    pattern = schema["pattern"].removesuffix("$")
    return (schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9)
            and re.compile(pattern).fullmatch(value) is not None)


CHECKS = {
    "subscriptionId": rules.check_subscription_id,
    "resourceGroupName": rules.check_resource_group,
    "serviceName": rules.check_service_name,
    "accessName": rules.parse_access_name,
}
TRICKY = ["", ".", "..", "a.", "a\n", "\n", "a\x00", "ä", "résumé", "x" * 50, "x" * 51, "x" * 90, "x" * 91,
          "11111111-2222-3333-4444-555555555555", "11111111-2222-3333-4444-555555555555\n", "ACCESS", "gitaccess",
          "access ", "a-", "-a", "a(b)", "a/b", "a%2Fb", "٣"]


def _server_accepts(name: str, value: str) -> bool:
    problems = Problems()
    CHECKS[name](value, problems)
    return not problems.items


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_published_patterns_accept_exactly_what_the_rules_accept(name: str, tmp_path: Path) -> None:
    schema = _doc_parameters(tmp_path)[name]
    for value in TRICKY:
        assert _doc_accepts(schema, value) == _server_accepts(name, value), (name, value)

    @settings(max_examples=300, database=None, derandomize=True)
    @given(st.one_of(st.text(max_size=100), st.from_regex(schema["pattern"].removesuffix("$") + r"\Z")))
    def agree(value: str) -> None:
        assert _doc_accepts(schema, value) == _server_accepts(name, value), (name, value)

    agree()

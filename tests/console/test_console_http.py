"""The console's files as served: headers, policy, and what the files may not contain."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import httpx
import pytest

from tenant_access.http.console import CONTENT_SECURITY_POLICY
from tests.serverproc import ServerProcess

STATIC = resources.files("tenant_access.http") / "static"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    made = ServerProcess(tmp_path_factory.mktemp("console-http")).start()  # strict authentication
    yield made
    made.stop()


def test_the_page_is_public_and_locked_down(server: ServerProcess) -> None:
    response = httpx.get(f"{server.url}/console")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(("name", "media"), [
    ("console.js", "text/javascript; charset=utf-8"),
    ("sas.js", "text/javascript; charset=utf-8"),
    ("console.css", "text/css; charset=utf-8"),
    ("favicon.svg", "image/svg+xml"),
])
def test_assets_are_served_with_their_type_and_revalidated(server: ServerProcess, name: str, media: str) -> None:
    response = httpx.get(f"{server.url}/console/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.content == (STATIC / name).read_bytes()
    again = httpx.get(f"{server.url}/console/{name}", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize("path", [
    "/console/nope.js", "/console/..%2Fconsole.py", "/console/%2e%2e", "/console/console.js/x", "/console/%2E",
    "/console/__init__.py",
])
def test_only_shipped_files_are_served(server: ServerProcess, path: str) -> None:
    response = httpx.get(f"{server.url}{path}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_trailing_slash_and_index_lead_to_the_page(server: ServerProcess) -> None:
    for path in ("/console/", "/console/index.html"):
        response = httpx.get(f"{server.url}{path}")
        assert response.status_code == 308
        assert response.headers["location"] == "../console"
    assert httpx.get(f"{server.url}/console/", follow_redirects=True).url.path == "/console"


def test_the_console_can_be_switched_off(tmp_path: Path) -> None:
    for server in (ServerProcess(tmp_path / "flag", ["--no-console"]),
                   ServerProcess(tmp_path / "env", env={"TENANT_ACCESS_CONSOLE": "false"})):
        server.start()
        try:
            assert httpx.get(f"{server.url}/console").status_code == 404
            assert httpx.get(f"{server.url}/console/console.js").status_code == 404
            assert httpx.get(f"{server.url}/healthz").status_code == 200
        finally:
            server.stop()


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        self._in_script = tag == "script"
        self.problems += [f"{tag} has {n}" for n in names if n.startswith("on") or n == "style"]
        for name, text in attrs:
            if name in ("src", "href") and text and re.match(r"^(https?:)?//", text):
                self.problems.append(f"{tag} loads {text}")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script text")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_no_inline_script_no_handlers_no_external_assets() -> None:
    parser = _Markup()
    parser.feed((STATIC / "index.html").read_text())
    assert parser.problems == []
    for name in ("console.js", "sas.js", "console.css", "index.html"):
        text = (STATIC / name).read_text()
        assert not re.search(r"https?://", text), f"{name} names an external URL"
        assert "@import" not in text
    for name in ("console.js", "sas.js"):
        code = (STATIC / name).read_text()
        # Text from the server never becomes markup; nothing is evaluated from strings.
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                       "localStorage.setItem(TOKEN", "cookie"):
            assert banned not in code, f"{name} uses {banned}"


def test_the_token_is_kept_in_session_storage_only() -> None:
    code = (STATIC / "console.js").read_text()
    assert "sessionStorage.setItem(TOKEN_KEY" in code
    assert re.findall(r"localStorage\.setItem\((\w+)", code) == ["SCOPE_KEY"]  # not secret: ids of a scope

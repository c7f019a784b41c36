"""The pytest plugin: ``tenant_access_server`` and ``tenant_access_server_factory``.

Registered through the ``pytest11`` entry point, so it loads in every pytest run of an
environment where tenant-access is installed; it therefore imports nothing of the server (or of
the client) until a test asks for a server.

Options reach the fixture in three ways, the later winning: the ``tenant_access`` marker
(``@pytest.mark.tenant_access(api_style="azure", tls=True)``, on a test, class or module), and
indirect parametrisation (``@pytest.mark.parametrize("tenant_access_server", [{...}, {...}],
indirect=True)``). Every test gets a server of its own, with a fresh store in a temporary
directory, stopped (and the directory deleted) when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tenant_access.testing import RunningServer

MARKER = "tenant_access"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the tenant_access_server fixture: api_style ('seed' or 'azure'), "
        "auth ('strict', 'emulator', 'none'), tls (bool), seed (a seed document or file), and Settings fields",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):  # module, then class, then test
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, dict):
        options.update(param)
    elif param is not None:
        raise pytest.UsageError("parametrize tenant_access_server with dicts of start_server() options")
    return options


@pytest.fixture
def tenant_access_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """A running server with a fresh store, for this test only; see :class:`RunningServer`."""
    from tenant_access.testing import run_server

    with run_server(**_options(request)) as server:
        yield server


@pytest.fixture
def tenant_access_server_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., RunningServer]]:
    """``start(**options)`` starts another server (marker options apply, keywords win); every
    server it started stops at the end of the test, last started first."""
    from tenant_access.testing import start_server

    started: list[RunningServer] = []
    defaults = _options(request)

    def start(**options: Any) -> RunningServer:
        server = start_server(**{**defaults, **options})
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()

"""Test helpers: a real tenant-access server per test, its emulator controls, and a pytest plugin.

::

    from tenant_access.testing import run_server

    with run_server(api_style="azure", tls=True) as server:
        server.client.list_services(...)
        server.emulator.add_fault("access.regenerate_secondary_key", status=503, count=1)

With pytest the plugin (registered as the ``tenant_access`` entry point, so installing the
package is enough) provides the ``tenant_access_server`` fixture and the
``tenant_access_server_factory`` fixture; see ``docs/testing.md``. Importing this package loads
neither the server nor pytest: the server is imported when one is started.
"""

from tenant_access.testing._controls import EmulatorControls, read_document
from tenant_access.testing._server import (
    AsyncStaticTokenCredential,
    RunningServer,
    StaticTokenCredential,
    run_server,
    start_server,
)

__all__ = [
    "AsyncStaticTokenCredential",
    "EmulatorControls",
    "RunningServer",
    "StaticTokenCredential",
    "read_document",
    "run_server",
    "start_server",
]

"""The client stays light and its public surface stays explicit."""

from __future__ import annotations

import json
import subprocess
import sys

import tenant_access.client as client_package


def test_importing_the_client_loads_nothing_of_the_server() -> None:
    code = (
        "import sys, json, tenant_access.client; "
        "print(json.dumps(sorted(m for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    ours = {m for m in loaded if m.startswith("tenant_access")}
    assert ours == {"tenant_access"} | {m for m in ours if m.startswith("tenant_access.client")}
    for heavy in ("uvicorn", "sqlite3", "_sqlite3", "cryptography", "yaml", "uvloop"):
        assert heavy not in loaded, heavy


def test_all_is_explicit_and_complete() -> None:
    # isidentifier: pytest rewrites asserts in the whole distribution of an installed plugin (ours,
    # tenant_access.testing.plugin), which adds '@py_builtins' and '@pytest_ar' to the namespace.
    public = {name for name in dir(client_package) if not name.startswith("_") and name.isidentifier()}
    assert set(client_package.__all__) == public
    assert len(client_package.__all__) == len(set(client_package.__all__))
    for name in client_package.__all__:
        obj = getattr(client_package, name)
        if isinstance(obj, type):
            assert obj.__module__ == "tenant_access.client", name

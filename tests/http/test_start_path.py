"""What the path from start to first answer leaves for later: the warm-up of bearer-token
verification (PyJWT and the X.509 parts of cryptography it imports) runs on a thread of its own once
the server accepts connections, and prometheus-client is loaded at the first scrape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import asyncio, sys, threading
from pathlib import Path
from tenant_access.config import Settings
from tenant_access.http.app import create_app

async def main():
    app = create_app(Settings(data_dir=Path(sys.argv[1])))
    print("built", "jwt" in sys.modules)
    await app.startup()
    for thread in threading.enumerate():
        if thread.name == "tenant-access-warm-up":
            thread.join(30)
    print("warmed", "jwt" in sys.modules, app.auth.warm_token is None)
    print("prometheus", "prometheus_client" in sys.modules)
    app.metrics.rotation("access", "primary")
    body = app.metrics.exposition().decode()
    print("scraped", 'tenant_access_key_rotations_total{configuration="access",slot="primary"} 1.0' in body,
          "tenant_access_scheduler" in body or "tenant_access_rotation_policies" in body)
    await app.shutdown()

asyncio.run(main())
"""


def test_building_the_app_leaves_the_token_warm_up_to_a_thread_after_start(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "data")], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split("\n")[:2] == ["built False", "warmed True True"], out.stdout + out.stderr


def test_prometheus_client_is_loaded_at_the_first_scrape_with_every_series(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "data")], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split("\n")[2:4] == ["prometheus False", "scraped True True"], out.stdout + out.stderr

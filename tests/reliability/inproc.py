"""The real application on a real uvicorn server on 127.0.0.1, in a thread of the test process.

For tests that need to reach inside the server (a store wrapped with faults, a store closed and
reopened to simulate a restart) while still talking HTTP to it exactly as a client would.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from tenant_access.config import Settings
from tenant_access.http.app import App
from tenant_access.runtime import open_store_for
from tenant_access.storage.base import Store


class InProcessServer:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store: Store = store if store is not None else open_store_for(settings)
        self.app = App(settings, self.store)
        self.url = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.app.on_started = self._started
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> InProcessServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(256)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_config=None, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.01)
        return self

    def _started(self) -> None:
        self.loop = asyncio.get_running_loop()

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the server's event loop (where its store lives) and answer its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def token(self, role: str = "owner", scope: str = "/", sub: str = "tests") -> str:
        from tenant_access.security.tokens import issue_token, load_or_create_signing_key

        return issue_token(load_or_create_signing_key(self.settings.data_dir, create=False), sub, role, scope, 3600,
                           iss=self.settings.base_url)

    def auth(self, role: str = "owner", scope: str = "/", sub: str = "tests") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, scope, sub)}"}

    def __enter__(self) -> InProcessServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def settings_for(data_dir: Path, **overrides: Any) -> Settings:
    """Settings as a test server has them: its own data directory, nothing from the environment."""
    return Settings(data_dir=data_dir, **{"auth_failures_per_minute": 1_000_000, **overrides})

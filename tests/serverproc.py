"""A real server process for tests: started on a free port, stopped (or killed) on demand.

Tests that are about HTTP talk to this over TCP, exactly as a user's client would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

_LISTENING = re.compile(r"tenant-access listening on (https?://\S+)")
_CERTIFICATE = re.compile(r"^TLS certificate: (.+?) \(")


class ServerProcess:
    def __init__(self, data_dir: Path, args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.output: list[str] = []
        self.port = 0
        #: The certificate a TLS server printed at start (``--tls``), for clients to trust.
        self.cert_path: Path | None = None
        self._pump: threading.Thread = threading.Thread()

    def start(self, timeout: float = 20.0) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENANT_ACCESS_")}
        env.update(self.env)
        cmd = [sys.executable, "-m", "tenant_access", "serve", "--port", str(self.port),
               "--data-dir", str(self.data_dir), *self.args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
        )
        found = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                cert = _CERTIFICATE.search(line)
                if cert and not found.is_set():
                    self.cert_path = Path(cert[1])
                match = _LISTENING.search(line)
                if match and not found.is_set():
                    self.url = match[1]
                    found.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start:\n" + "".join(self.output))
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code = self.proc.returncode
        self._pump.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> ServerProcess:
        """Stop and start again on the same port and data directory."""
        self.stop()
        return self.start()

    def token(self, role: str = "owner", scope: str = "/", expires_in: int = 3600, sub: str = "tests") -> str:
        """A bearer token signed with this server's own signing secret, as ``tenant-access token`` makes."""
        from tenant_access.security.tokens import mint

        return mint(self.data_dir, self.issuer, sub, role, scope, expires_in)

    @property
    def issuer(self) -> str:
        """The server's own issuer: its ``--public-url`` when given, else the URL it listens on."""
        if "--public-url" in self.args:
            return self.args[self.args.index("--public-url") + 1].rstrip("/")
        return self.url

    def auth(self, role: str = "owner", scope: str = "/") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, scope)}"}

    def log(self) -> str:
        return "".join(self.output)

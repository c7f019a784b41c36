"""A real PostgreSQL for the tests.

``TEST_DATABASE_URL`` (a superuser URL of a server the tests may create databases on) when it is set;
otherwise a private server that the tests start themselves from the ``pgserver`` package (PostgreSQL
binaries installed from the package index), listening on a Unix socket in a temporary directory
only. Each test server gets a database of its own (``CREATE DATABASE``), dropped afterwards.

Tests that stop and start the database (:meth:`Cluster.stop`, :meth:`Cluster.start`) always use a
private server of their own, whatever ``TEST_DATABASE_URL`` says: they must not disturb anyone else's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ENV_URL = "TEST_DATABASE_URL"


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead (URL form: the server takes only URLs)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _import_pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (it falls back to /tmp), at import.
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


class Cluster:
    """One PostgreSQL server: an external one (``TEST_DATABASE_URL``) or a private pgserver one."""

    def __init__(self, admin_url: str, server: Any | None = None) -> None:
        self.admin_url = admin_url
        self.server = server  # pgserver.PostgresServer, when the tests started it
        self.base: Path | None = None

    @classmethod
    def private(cls) -> Cluster:
        """A new server in a new temporary directory, deleted again by :meth:`close` (or at exit).

        Not under pytest's temporary directory: pytest makes that private to root from time to time,
        and the server (run as an unprivileged user when the tests run as root) must reach its files.
        """
        pgserver = _import_pgserver()
        base = Path(tempfile.mkdtemp(prefix="tenant-access-pg-"))
        base.chmod(0o755)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(base / "pgdata", cleanup_mode="delete")
        cluster = cls(server.get_uri(), server)
        cluster.base = base
        return cluster

    @classmethod
    def from_env(cls) -> Cluster | None:
        url = os.environ.get(ENV_URL, "").strip()
        return cls(url) if url else None

    @property
    def private_server(self) -> bool:
        return self.server is not None

    def connect(self, url: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(url or self.admin_url, autocommit=True, connect_timeout=5, **kwargs)

    def create_database(self, prefix: str = "ta") -> str:
        """A new empty database; answers its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return with_database(self.admin_url, name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database`: on a shared server only, since a drop
        forces a checkpoint (seconds), and a private server is deleted whole at the end anyway."""
        if self.server is not None:
            return
        name = urlsplit(url).path.lstrip("/")
        try:
            with self.connect() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error:
            pass  # the cluster is going away, or stopped by the test that used it

    # -- a private server only ------------------------------------------------------------------

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m MODE``): every connection to it is cut."""
        assert self.server is not None, "only a private server may be stopped"
        pgserver = _import_pgserver()
        pgserver.pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.server.pgdata, user=self.server.system_user,
                        timeout=60)

    def start(self) -> None:
        """Start it again on the same data directory and socket."""
        assert self.server is not None, "only a private server may be started"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.server.ensure_postgres_running()

    def close(self) -> None:
        if self.server is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.server.cleanup()
            self.server = None
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


def terminate_backends(conn: psycopg.Connection[Any], application_name_prefix: str) -> list[int]:
    """``pg_terminate_backend`` every session whose application_name starts with the prefix; answers their pids."""
    rows = conn.execute(
        "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
        (application_name_prefix.replace("%", r"\%").replace("_", r"\_") + "%",),
    ).fetchall()
    return [int(r[0]) for r in rows]


def wait_for_backend(conn: psycopg.Connection[Any], application_name_prefix: str, timeout: float = 10.0,
                     exclude: tuple[int, ...] = ()) -> int:
    """Wait until a session with that application_name (not one of ``exclude``) exists; answers its pid."""
    deadline = time.monotonic() + timeout
    pattern = application_name_prefix.replace("%", r"\%").replace("_", r"\_") + "%"
    while time.monotonic() < deadline:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s", (pattern,)).fetchall()
        pids = [int(r[0]) for r in rows if int(r[0]) not in exclude]
        if pids:
            return pids[0]
        time.sleep(0.02)
    raise TimeoutError(f"no session named {application_name_prefix}* appeared within {timeout}s")

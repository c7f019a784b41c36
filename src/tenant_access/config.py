"""Every setting in one place: its flag, its environment variable, its default.

The CLI builds a :class:`Settings` from flags, falling back to ``TENANT_ACCESS_*`` variables and
then to the defaults below; nothing else reads the environment. ``docs/configuration.md`` is the
user-facing copy of this table.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tenant_access.domain.retention import DEFAULT_RETENTION, Retention

ENV_PREFIX = "TENANT_ACCESS_"
API_STYLES = ("seed", "azure")
AUTH_MODES = ("strict", "emulator", "none")
#: Who may read ``/metrics``: loopback clients without credentials (others with a root-scope
#: credential), anyone, only root-scope credentials, or nobody (the route is not served).
METRICS_ACCESS = ("loopback", "public", "auth", "off")
LOG_FORMATS = ("auto", "json", "text")
EVENT_DELIVERY = ("process", "inline", "off")
MAX_TOKEN_LIFETIME = 24 * 3600
MAX_SAS_LIFETIME = 30 * 24 * 3600
_PUBLIC_URL = re.compile(r"https?://[^\s/?#@]+", re.ASCII)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tenant-access"


@dataclass(frozen=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (loopback by default)"})
    port: int = field(default=8700, metadata={"help": "TCP port; 0 picks a free one and prints it"})
    data_dir: Path = field(default_factory=default_data_dir,
                           metadata={"help": "where the SQLite file (and later keys, certificates) live"})
    workers: int = field(default=1, metadata={
        "help": "server processes sharing the port, kept running by a supervising parent; 1: one process, no parent"})
    database_url: str | None = field(default=None, metadata={
        "help": "database URL (sqlite:///file or postgresql://...); default: SQLite file in the data dir"})
    migrate: bool = field(default=True, metadata={
        "help": "apply pending schema migrations at start; false: refuse to start on an older schema"})
    database_pool_size: int = field(default=10, metadata={
        "help": "PostgreSQL connections per server process, besides the one listening for changes"})
    api_style: str = field(default="seed", metadata={"help": "wire format: seed (default) or azure"})
    log_level: str = field(default="info", metadata={"help": "debug, info, warning or error"})
    max_body_bytes: int = field(default=64 * 1024, metadata={"help": "largest accepted request body"})
    master_key: str | None = field(default=None, repr=False,
                                   metadata={"help": "base64 of 32 bytes; default: the keyring <data_dir>/master-keys"})
    previous_master_key: str | None = field(default=None, repr=False, metadata={
        "help": "comma-separated earlier master keys (decrypt-only), with master_key from the environment"})
    tls: bool = field(default=False, metadata={
        "help": "serve HTTPS; without tls_cert/tls_key a self-signed certificate is made in <data_dir>/tls"})
    tls_cert: Path | None = field(default=None, metadata={"help": "PEM certificate (chain) to serve; implies tls"})
    tls_key: Path | None = field(default=None, metadata={"help": "PEM private key of tls_cert; implies tls"})
    header_timeout: float = field(default=10.0, metadata={
        "help": "seconds a client may take to send a request's headers before the connection is closed"})
    request_timeout: float = field(default=30.0, metadata={
        "help": "seconds a client may take to send a whole request (headers and body) before a 408 and the "
                "connection is closed"})
    max_connections_per_address: int = field(default=128, metadata={
        "help": "open connections one client address may hold; the next is answered 429 and closed"})
    forwarded_allow_ips: str | None = field(default=None, metadata={
        "help": "comma-separated IPs/CIDRs of proxies whose X-Forwarded-For/-Proto are believed ('*': any, "
                "unsafe); default none: the headers are ignored"})
    auth: str = field(default="strict", metadata={"help": "strict (default), emulator, or none"})
    token_keys: str | None = field(default=None, metadata={
        "help": "comma-separated PEM or JWKS (.json) files of extra token verification keys"})
    token_audience: str | None = field(default=None, metadata={
        "help": "comma-separated accepted aud values; default the Azure management audiences"})
    token_issuer: str | None = field(default=None, metadata={
        "help": "comma-separated accepted iss of tokens verified by --token-keys; default any. The server's own "
                "tokens always carry (and need) its own issuer, the public URL"})
    auth_failures_per_minute: int = field(default=20, metadata={
        "help": "failed authentications per client address a minute before 429"})
    rate_limit: float = field(default=0.0, metadata={"help": "requests a second per principal; 0 is off"})
    regenerate_rate_limit: float = field(default=0.0, metadata={
        "help": "key regenerations a second per principal; 0 is off"})
    console: bool = field(default=True, metadata={"help": "serve the web console at /console"})
    metrics: str = field(default="loopback", metadata={
        "help": "who may read /metrics: loopback (default; others need a root-scope credential), public, auth, off"})
    log_format: str = field(default="auto", metadata={
        "help": "auto (JSON lines unless stderr is a terminal), json or text"})
    emulator_controls: bool | None = field(default=None, metadata={
        "help": "serve the owner-only /_emulator/ endpoints (reset, state, seed, faults); default: on with "
                "--auth emulator or none, off with strict"})
    seed: Path | None = field(default=None, metadata={
        "help": "YAML or JSON file of services to provision at start (idempotent)"})
    public_url: str | None = field(default=None, metadata={
        "help": "the URL clients reach this server at (scheme://host[:port]); the issuer of its tokens, an "
                "audience it accepts, and the base of its OpenID document; default from --host, --port, --tls"})
    max_token_lifetime: int = field(default=MAX_TOKEN_LIFETIME, metadata={
        "help": "seconds a bearer token may live (exp - iat, exp - now); also the signing-key overlap window"})
    max_sas_lifetime: int = field(default=MAX_SAS_LIFETIME, metadata={
        "help": "seconds ahead a shared access signature's expiry may lie (Azure's cap: 30 days)"})
    scheduler: bool = field(default=True, metadata={
        "help": "run the rotation scheduler (due rotation policy actions) in this process; off for replicas that "
                "should not"})
    audit_retention: str = field(default=DEFAULT_RETENTION, metadata={
        "help": "how long audit records are kept, by kind: reads=90d,refusals=90d,changes=forever (the default); "
                "kinds not named keep their default"})
    allow_private_event_destinations: bool = field(default=False, metadata={
        "help": "let event subscriptions deliver to loopback, private, link-local and metadata addresses "
                "(tests and local use); default refused"})
    event_retry_window: float = field(default=24 * 3600.0, metadata={
        "help": "seconds an event delivery is retried (exponential backoff with jitter) before it is dead-lettered"})
    event_retry_delay: float = field(default=2.0, metadata={
        "help": "seconds before the first retry of a failed delivery; each later one waits twice as long (at most "
                "10 minutes), less up to half for jitter"})
    event_attempt_timeout: float = field(default=10.0, metadata={
        "help": "seconds one delivery attempt (or subscription handshake) may take"})
    event_concurrency: int = field(default=16, metadata={
        "help": "event delivery requests in flight at once, per server process"})
    event_delivery: str = field(default="process", metadata={
        "help": "where this server sends event deliveries from: process (a child process it supervises, "
                "tenant-access events deliver, so delivery runs on another core), inline (the server's own event "
                "loop), off (not here: another replica or a separate events deliver does)"})

    def __post_init__(self) -> None:
        if self.api_style not in API_STYLES:
            raise ValueError(f"api style must be one of {', '.join(API_STYLES)}, not {self.api_style!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both a TLS certificate and its key, or neither")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")
        if self.auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_MODES)}, not {self.auth!r}")
        if self.metrics not in METRICS_ACCESS:
            raise ValueError(f"metrics must be one of {', '.join(METRICS_ACCESS)}, not {self.metrics!r}")
        if self.event_delivery not in EVENT_DELIVERY:
            raise ValueError(f"event delivery must be one of {', '.join(EVENT_DELIVERY)}, not {self.event_delivery!r}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}")
        if self.forwarded_allow_ips is not None:
            object.__setattr__(self, "forwarded_allow_ips", _proxies(self.forwarded_allow_ips))
        Retention.parse(self.audit_retention)  # raises ValueError, naming what is wrong
        if self.tls_cert is not None and not self.tls:
            object.__setattr__(self, "tls", True)
        if self.public_url is not None:
            url = self.public_url.rstrip("/")
            if not _PUBLIC_URL.fullmatch(url):
                raise ValueError(f"the public URL must be http(s)://host[:port] with no path, not {self.public_url!r}")
            object.__setattr__(self, "public_url", url)
        if not 60 <= self.max_token_lifetime <= 366 * 24 * 3600:
            raise ValueError("the maximum token lifetime must be 60 seconds to 366 days")
        if not 60 <= self.max_sas_lifetime <= 366 * 24 * 3600:
            raise ValueError("the maximum SAS lifetime must be 60 seconds to 366 days")
        if self.event_retry_window < 0 or self.event_attempt_timeout <= 0 or self.event_concurrency < 1 \
                or self.event_retry_delay <= 0:
            raise ValueError("the event retry window must be >= 0, the attempt timeout > 0, the concurrency >= 1")

    @property
    def base_url(self) -> str:
        """The public URL: ``public_url``, or what the listening address and scheme give. Never the
        ``Host`` header of a request, which any client (or a poisoned cache in front) can choose."""
        if self.public_url is not None:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def emulator_controls_enabled(self) -> bool:
        """Off by default where credentials are really checked: a reset erases the audit trail,
        which no owner can otherwise do, so a production server must opt in to it."""
        return self.auth != "strict" if self.emulator_controls is None else self.emulator_controls

    @property
    def retention(self) -> Retention:
        return Retention.parse(self.audit_retention)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``TENANT_ACCESS_*`` variables, then explicit (non-None) overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)


def _proxies(raw: str) -> str | None:
    """The proxies' addresses, checked (a typo must stop the start, not silently trust nothing or
    the wrong host) and normalised; ``None`` when the list is empty."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    for item in items:
        if item != "*":
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"forwarded_allow_ips: {item!r} is not an IP address, a CIDR network or '*'") from None
    return ",".join(items) or None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(kind: Any, raw: str) -> Any:
    text = str(kind)
    if text in ("bool", "bool | None"):
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise ValueError(f"expected true or false, not {raw!r}")
    if text == "float":
        return float(raw)
    if "int" in text:
        return int(raw)
    if "Path" in text:
        return Path(raw).expanduser()
    return raw

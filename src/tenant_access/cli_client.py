"""``tenant-access services|access|keys|audit|emulator``: the API from a shell, over the Python client.

These commands talk HTTP to a running server (the others in :mod:`tenant_access.cli` work on a
data directory). Only click is imported at module level and the client inside each command, so
``tenant-access --help`` stays fast and nothing here loads the server.

Exit codes are owned by the exception classes below, as click's own ``UsageError`` owns 2, so
that one table (``docs/cli.md``) says what a script can rely on:

====  ==========================================================================
0     success
1     aborted at a confirmation prompt, or an unexpected failure (a bug)
2     usage error: bad flags or arguments, a missing subscription (click's own)
3     authentication or authorization refused (401, 403)
4     not found (404): no such service, or no such route on that endpoint
5     any other refusal by the API (400, 409, 412, ...): the request was wrong
6     server failure or unreachable (5xx, 429, connection, TLS, timeout, unreadable answer)
====  ==========================================================================

Codes 3 to 5 mean "the request will fail again as it is"; 6 means "retrying later may work".
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from tenant_access.cli_help import HelpGroup

if TYPE_CHECKING:
    from tenant_access.client import Client, ServiceRef
    from tenant_access.testing._controls import EmulatorControls

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_ENDPOINT = "http://127.0.0.1:8700"
MASK = "********"


# -- exit codes ----------------------------------------------------------------------------------


class CommandFailed(click.ClickException):
    """A command that reached the server (or tried to) and failed; the subclass sets the exit code."""

    exit_code = 1


class AuthenticationFailed(CommandFailed):
    exit_code = 3


class NotFoundFailure(CommandFailed):
    exit_code = 4


class RequestRefused(CommandFailed):
    exit_code = 5


class ServerUnavailable(CommandFailed):
    exit_code = 6


def _failure(exc: Exception) -> CommandFailed:
    """The command failure for a client exception: the class picks the exit code."""
    from tenant_access import client as c

    text = str(exc)
    if isinstance(exc, c.AuthenticationError | c.PermissionDenied):
        return AuthenticationFailed(text)
    if isinstance(exc, c.NotFound):
        return NotFoundFailure(text)
    if isinstance(exc, c.RateLimited | c.ServerError):
        if exc.retry_after is not None:
            text += f"; retry after {exc.retry_after:g} s"
        return ServerUnavailable(text)
    if isinstance(exc, c.ApiError):
        return RequestRefused(text)
    if isinstance(exc, c.TransportError):
        return ServerUnavailable(f"cannot reach the server: {text}")
    return ServerUnavailable(f"unexpected answer: {text}")


# -- connection ----------------------------------------------------------------------------------


@dataclass
class Connection:
    """Everything a command needs to call the API, from flags or ``TENANT_ACCESS_*`` variables."""

    endpoint: str
    token: str | None
    sas_key: str | None
    sas_uid: str
    cacert: str | None
    insecure: bool
    api_style: str
    api_version: str | None
    timeout: float
    subscription: str | None
    resource_group: str | None
    output: str

    def client(self) -> Client:
        from tenant_access.client import BearerToken, Client, SharedAccessSignature

        if self.token and self.sas_key:
            raise click.UsageError("give either --token or --sas-key, not both")
        credential: Any = None
        try:
            if self.token:
                credential = BearerToken(self.token)
            elif self.sas_key:
                credential = SharedAccessSignature(self.sas_uid, self.sas_key)
            verify: Any = False if self.insecure else (self.cacert or True)
            options: dict[str, Any] = {"endpoint": self.endpoint, "credential": credential, "verify": verify,
                                       "timeout": self.timeout, "api_style": self.api_style}
            if self.api_version:
                options["api_version"] = self.api_version
            return Client(**options)
        except (ValueError, OSError) as exc:
            raise click.UsageError(str(exc)) from None

    def service(self, name: str) -> ServiceRef:
        from tenant_access.client import ServiceRef

        subscription, resource_group = self.scope()
        return ServiceRef(subscription, resource_group, name)

    def scope(self) -> tuple[str, str]:
        if not self.subscription:
            raise click.UsageError("give the subscription with --subscription or TENANT_ACCESS_SUBSCRIPTION")
        if not self.resource_group:
            raise click.UsageError("give the resource group with --resource-group or TENANT_ACCESS_RESOURCE_GROUP")
        return self.subscription, self.resource_group


_CONNECTION_OPTIONS: list[Callable[[F], F]] = [
    click.option("--endpoint", envvar="TENANT_ACCESS_ENDPOINT", default=DEFAULT_ENDPOINT, show_default=True,
                 help="The server's base URL. [env TENANT_ACCESS_ENDPOINT]"),
    click.option("--token", envvar="TENANT_ACCESS_TOKEN",
                 help="Bearer token (tenant-access token makes one). [env TENANT_ACCESS_TOKEN]"),
    click.option("--sas-key", envvar="TENANT_ACCESS_SAS_KEY",
                 help="Sign requests with this access key instead (SharedAccessSignature). "
                 "[env TENANT_ACCESS_SAS_KEY]"),
    click.option("--sas-uid", envvar="TENANT_ACCESS_SAS_UID", default="integration", show_default=True,
                 help="The principal id the SAS is for. [env TENANT_ACCESS_SAS_UID]"),
    click.option("--cacert", envvar="TENANT_ACCESS_CACERT", type=click.Path(dir_okay=False, exists=True),
                 help="CA bundle to trust, e.g. the server's <data-dir>/tls/cert.pem. [env TENANT_ACCESS_CACERT]"),
    click.option("--insecure", envvar="TENANT_ACCESS_INSECURE", is_flag=True,
                 help="Do not verify the server's TLS certificate. [env TENANT_ACCESS_INSECURE]"),
    click.option("--api-style", envvar="TENANT_ACCESS_API_STYLE", type=click.Choice(["auto", "seed", "azure"]),
                 default="auto", show_default=True, help="The server's wire format. [env TENANT_ACCESS_API_STYLE]"),
    click.option("--api-version", envvar="TENANT_ACCESS_API_VERSION",
                 help="api-version to send. [env TENANT_ACCESS_API_VERSION; default 2024-05-01]"),
    click.option("--timeout", type=click.FloatRange(0.1), default=10.0, show_default=True, help="Seconds per request."),
    click.option("--output", "-o", envvar="TENANT_ACCESS_OUTPUT", type=click.Choice(["table", "json"]),
                 default="table", show_default=True,
                 help="Tables for people, JSON for scripts. [env TENANT_ACCESS_OUTPUT]"),
]
_SCOPE_OPTIONS: list[Callable[[F], F]] = [
    click.option("--subscription", "-s", envvar="TENANT_ACCESS_SUBSCRIPTION",
                 help="Subscription id. [env TENANT_ACCESS_SUBSCRIPTION]"),
    click.option("--resource-group", "-g", envvar="TENANT_ACCESS_RESOURCE_GROUP",
                 help="Resource group. [env TENANT_ACCESS_RESOURCE_GROUP]"),
]
_CONNECTION_NAMES = ("endpoint", "token", "sas_key", "sas_uid", "cacert", "insecure", "api_style", "api_version",
                     "timeout", "output", "subscription", "resource_group")


def api_command(name: str, group: click.Group | None = None, *, scoped: bool = True) -> Callable[[F], click.Command]:
    """A command (of ``group``, when given) that receives a :class:`Connection` first and whose
    client errors leave with the exit code of their class."""

    def decorate(func: F) -> click.Command:
        @functools.wraps(func)
        def run(**kwargs: Any) -> Any:
            given = {k: kwargs.pop(k, None) for k in _CONNECTION_NAMES}
            conn = Connection(**{**given, "insecure": bool(given["insecure"])})
            from tenant_access.client import TenantAccessError

            try:
                return func(conn, **kwargs)
            except TenantAccessError as exc:
                raise _failure(exc) from None

        for option in reversed(_CONNECTION_OPTIONS + (_SCOPE_OPTIONS if scoped else [])):
            run = option(run)
        return group.command(name)(run) if group is not None else click.command(name)(run)

    return decorate


# -- output --------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(_plain(value), indent=2, ensure_ascii=False))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, _dt.datetime):
        return value.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def emit_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        click.echo("  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip())


def emit_record(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(label) for label, _ in pairs)
    for label, value in pairs:
        click.echo(f"{label + ':':<{width + 1}}  {_cell(value)}")


def _confirm(question: str, yes: bool) -> None:
    """Destructive commands ask at a terminal and refuse to guess elsewhere: a script says ``--yes``."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.UsageError("this deletes data; add --yes to confirm when not at a terminal")
    click.confirm(question, abort=True)


def _access_name(git: bool) -> str:
    return "gitAccess" if git else "access"


_GIT_OPTION = click.option("--git", is_flag=True, help="The gitAccess configuration instead of access.")
_IF_MATCH_OPTION = click.option("--if-match", default="*", show_default=True,
                                help="Change only if the configuration's ETag is still this (from access show).")


# -- services ------------------------------------------------------------------------------------


@click.group(cls=HelpGroup)
def services() -> None:
    """API Management services: create, list, show, delete."""


def _service_rows(found: Sequence[Any]) -> list[list[Any]]:
    return [[s.name, s.resource_group, s.location, f"{s.sku_name} ({s.sku_capacity})", s.publisher_email,
             s.created_at] for s in found]


_SERVICE_HEADERS = ("NAME", "RESOURCE GROUP", "LOCATION", "SKU", "PUBLISHER", "CREATED")


def _show_service(conn: Connection, svc: Any) -> None:
    if conn.output == "json":
        emit_json(svc)
        return
    emit_record([("name", svc.name), ("id", svc.id), ("location", svc.location),
                 ("sku", f"{svc.sku_name} ({svc.sku_capacity})"), ("publisher email", svc.publisher_email),
                 ("publisher name", svc.publisher_name), ("tags", svc.tags), ("state", svc.provisioning_state),
                 ("created", svc.created_at), ("etag", svc.etag)])


def _tags(values: Sequence[str]) -> dict[str, str] | None:
    if not values:
        return None
    tags = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--tag")
        tags[key] = value
    return tags


@api_command("create", services)
@click.argument("name")
@click.option("--location", "-l", required=True, help="Azure region, e.g. westeurope.")
@click.option("--publisher-email", required=True)
@click.option("--publisher-name", required=True)
@click.option("--sku", default="Developer", show_default=True)
@click.option("--capacity", type=click.IntRange(0), default=1, show_default=True)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Repeat for several tags.")
def services_create(conn: Connection, name: str, location: str, publisher_email: str, publisher_name: str, sku: str,
                    capacity: int, tags: tuple[str, ...]) -> None:
    """Create service NAME (both access configurations get fresh keys) or update it; keys never change here."""
    ref = conn.service(name)
    with conn.client() as client:
        svc = client.create_or_update_service(ref, location=location, publisher_email=publisher_email,
                                              publisher_name=publisher_name, sku_name=sku, sku_capacity=capacity,
                                              tags=_tags(tags))
    _show_service(conn, svc)


@api_command("list", services)
def services_list(conn: Connection) -> None:
    """The services of the resource group."""
    subscription, resource_group = conn.scope()
    with conn.client() as client:
        found = client.list_services(subscription, resource_group)
    if conn.output == "json":
        emit_json(found)
    else:
        emit_table(_SERVICE_HEADERS, _service_rows(found))


@api_command("show", services)
@click.argument("name")
def services_show(conn: Connection, name: str) -> None:
    """One service."""
    with conn.client() as client:
        svc = client.get_service(conn.service(name))
    _show_service(conn, svc)


@api_command("delete", services)
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--missing-ok", is_flag=True, help="Succeed when there is no such service (exit 0, not 4).")
def services_delete(conn: Connection, name: str, yes: bool, missing_ok: bool) -> None:
    """Delete service NAME with both access configurations and all their keys."""
    ref = conn.service(name)
    _confirm(f"Delete service {name} and all its keys?", yes)
    with conn.client() as client:
        deleted = client.delete_service(ref)
    if not deleted and not missing_ok:
        raise NotFoundFailure(f"no service {name} in resource group {ref.resource_group}")
    if conn.output == "json":
        emit_json({"name": name, "deleted": deleted})
    else:
        click.echo(f"deleted service {name}" if deleted else f"no service {name}: nothing to delete")


# -- access configurations -----------------------------------------------------------------------


@click.group(cls=HelpGroup)
def access() -> None:
    """The access and gitAccess configurations of a service: show, enable, disable, set."""


_ACCESS_HEADERS = ("NAME", "ENABLED", "PRINCIPAL", "PRIMARY KEY VERSION", "SECONDARY KEY VERSION", "ETAG")


def _access_row(config: Any) -> list[Any]:
    return [config.name, config.enabled, config.principal_id, config.primary_key_version_id,
            config.secondary_key_version_id, config.etag]


def _show_access(conn: Connection, config: Any) -> None:
    if conn.output == "json":
        emit_json(config)
        return
    emit_record(list(zip(("name", "enabled", "principal id", "primary key version", "secondary key version",
                          "etag"), _access_row(config), strict=True)))


@api_command("list", access)
@click.argument("service")
def access_list(conn: Connection, service: str) -> None:
    """Both configurations of SERVICE (never their keys: see keys show)."""
    with conn.client() as client:
        found = client.list_access(conn.service(service))
    if conn.output == "json":
        emit_json(found)
    else:
        emit_table(_ACCESS_HEADERS, [_access_row(c) for c in found])


@api_command("show", access)
@click.argument("service")
@_GIT_OPTION
def access_show(conn: Connection, service: str, git: bool) -> None:
    """One configuration of SERVICE, with the ETag that --if-match takes."""
    with conn.client() as client:
        config = client.get_access(conn.service(service).access(_access_name(git)))
    _show_access(conn, config)


def _set_enabled(conn: Connection, service: str, git: bool, if_match: str, enabled: bool) -> None:
    with conn.client() as client:
        config = client.update_access(conn.service(service).access(_access_name(git)), enabled=enabled,
                                      if_match=if_match)
    _show_access(conn, config)


@api_command("enable", access)
@click.argument("service")
@_GIT_OPTION
@_IF_MATCH_OPTION
def access_enable(conn: Connection, service: str, git: bool, if_match: str) -> None:
    """Switch the configuration on (for access: the direct management API and its SAS)."""
    _set_enabled(conn, service, git, if_match, True)


@api_command("disable", access)
@click.argument("service")
@_GIT_OPTION
@_IF_MATCH_OPTION
def access_disable(conn: Connection, service: str, git: bool, if_match: str) -> None:
    """Switch the configuration off; shared access signatures of its keys stop working."""
    _set_enabled(conn, service, git, if_match, False)


def _read_key(source: str | None) -> str | None:
    if source is None:
        return None
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    return text.strip()


@api_command("set", access)
@click.argument("service")
@_GIT_OPTION
@_IF_MATCH_OPTION
@click.option("--principal-id", help="The principal id (SAS uid) of the configuration.")
@click.option("--enabled/--disabled", default=None, help="Switch the configuration on or off.")
@click.option("--primary-key-file", metavar="FILE", help="Replace the primary key with the one in FILE ('-': stdin).")
@click.option("--secondary-key-file", metavar="FILE", help="Replace the secondary key likewise.")
def access_set(conn: Connection, service: str, git: bool, if_match: str, principal_id: str | None,
               enabled: bool | None, primary_key_file: str | None, secondary_key_file: str | None) -> None:
    """Replace properties of a configuration (PUT); what is not given keeps its value.

    Keys are read from files, never flags, so they do not end up in shell history or process lists.
    """
    try:
        primary, secondary = _read_key(primary_key_file), _read_key(secondary_key_file)
    except OSError as exc:
        raise click.BadParameter(str(exc)) from None
    with conn.client() as client:
        config = client.replace_access(conn.service(service).access(_access_name(git)), principal_id=principal_id,
                                       enabled=enabled, primary_key=primary, secondary_key=secondary,
                                       if_match=if_match)
    _show_access(conn, config)


# -- keys ----------------------------------------------------------------------------------------


#: Seconds between attempts of keys regenerate --wait.
WAIT_POLL = 5.0


def _regenerate_when_unused(client: Any, target: Any, slot: Any, unused_for: str, wait: float, poll: float) -> Any:
    """Try, and while the server answers 409 (used within the window) show the key's last use on
    stderr and try again, for at most ``wait`` seconds."""
    import time

    from tenant_access.client import Conflict

    deadline = time.monotonic() + wait
    while True:
        try:
            return client.regenerate_key(target, slot, if_unused_for=unused_for)
        except Conflict:
            if time.monotonic() + poll > deadline:
                raise
            usage = client.key_usage(target)
            key = usage.slot(slot)
            now = usage.as_of or _dt.datetime.now(_dt.UTC)
            left = max(0, int(deadline - time.monotonic()))
            click.echo(f"waiting: the {slot} key was last used {ago(key.last_used_at, now)} "
                       f"({key.use_count} uses); it must be unused for {unused_for} ({left}s left to wait)", err=True)
            time.sleep(poll)


@click.group(cls=HelpGroup)
def keys() -> None:
    """The primary and secondary keys: show (masked unless --reveal) and regenerate."""


@api_command("show", keys)
@click.argument("service")
@_GIT_OPTION
@click.option("--reveal", is_flag=True, help="Print the keys themselves instead of masking them.")
def keys_show(conn: Connection, service: str, git: bool, reveal: bool) -> None:
    """Both keys of a configuration (listSecrets; the read is audited even when masked here)."""
    with conn.client() as client:
        secrets = client.list_secrets(conn.service(service).access(_access_name(git)))
    primary = secrets.primary_key if reveal else MASK
    secondary = secrets.secondary_key if reveal else MASK
    if conn.output == "json":
        emit_json({"name": secrets.name, "enabled": secrets.enabled, "principal_id": secrets.principal_id,
                   "primary_key": primary, "secondary_key": secondary,
                   "primary_key_version_id": secrets.primary_key_version_id,
                   "secondary_key_version_id": secrets.secondary_key_version_id, "etag": secrets.etag})
        return
    emit_record([("name", secrets.name), ("enabled", secrets.enabled), ("principal id", secrets.principal_id),
                 ("primary key", primary), ("primary key version", secrets.primary_key_version_id),
                 ("secondary key", secondary), ("secondary key version", secrets.secondary_key_version_id)])
    if not reveal:
        click.echo("(keys masked: add --reveal to print them)", err=True)


def ago(when: _dt.datetime | None, now: _dt.datetime) -> str:
    """"3 min ago", "unused for 12 days" style wording for a last use (the console says the same)."""
    if when is None:
        return "never used"
    seconds = max(0, int((now - when).total_seconds()))
    if seconds < 60:
        return "this minute"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "min")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count > 1 and unit != 'min' else ''} ago"
    return "this minute"


@api_command("usage", keys)
@click.argument("service")
@_GIT_OPTION
def keys_usage(conn: Connection, service: str, git: bool) -> None:
    """When each key of SERVICE last authenticated a request (to the minute) and how often.

    A key unused for longer than your clients' refresh period is safe to regenerate
    (keys regenerate --if-unused-for).
    """
    with conn.client() as client:
        usage = client.key_usage(conn.service(service).access(_access_name(git)))
    if conn.output == "json":
        emit_json(usage)
        return
    now = usage.as_of or _dt.datetime.now(_dt.UTC)
    emit_table(["slot", "version", "last used", "uses", "unused for", "expires"],
               [(k.slot, k.version_id or "-", ago(k.last_used_at, now), k.use_count, k.unused_for or "-",
                 k.expires_at.isoformat() if k.expires_at else "never") for k in (usage.primary, usage.secondary)])


@api_command("policy", keys)
@click.argument("service")
@_GIT_OPTION
@click.option("--set", "document", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Set the policy from a JSON or YAML file (Key Vault's shape plus gracePeriod).")
@click.option("--delete", is_flag=True, help="Remove the policy: no more scheduled rotations, no key expiry.")
def keys_policy(conn: Connection, service: str, git: bool, document: Path | None, delete: bool) -> None:
    """The rotation policy of SERVICE and the scheduler's state for it (docs/rotation.md):
    next rotation, last outcome, whether rotation is blocked."""
    target = conn.service(service).access(_access_name(git))
    with conn.client() as client:
        if delete:
            gone = client.delete_rotation_policy(target)
            click.echo("deleted the rotation policy" if gone else "there was no rotation policy")
            return
        if document is not None:
            from tenant_access.testing._controls import read_document

            found = client.set_rotation_policy(target, read_document(document))
        else:
            found = client.get_rotation_policy(target)
    if conn.output == "json":
        emit_json(found)
        return
    status = found.get("status") or {}
    actions = ", ".join(f"{a['action']['type']} {k}={v}" for a in found.get("lifetimeActions", [])
                        for k, v in a["trigger"].items()) or "none"
    emit_record([("actions", actions), ("expiry time", (found.get("attributes") or {}).get("expiryTime") or "none"),
                 ("grace period", found.get("gracePeriod")), ("next rotation", status.get("nextRotation") or "-"),
                 ("overdue", "yes" if status.get("overdue") else "no"),
                 ("last run", status.get("lastRunAt") or "-"), ("last outcome", status.get("lastOutcome") or "-"),
                 ("blocked since", status.get("blockedSince") or "-")])


@api_command("regenerate", keys)
@click.argument("slot", type=click.Choice(["primary", "secondary"]))
@click.argument("service")
@click.option("--git", is_flag=True, help="Regenerate a gitAccess key (the git route).")
@click.option("--if-unused-for", "unused_for", metavar="DURATION",
              help="Refuse (409) while the key was used within this ISO 8601 duration, e.g. PT15M.")
@click.option("--wait", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
              help="With --if-unused-for: keep trying this long, showing the key's last use, until it is unused.")
@click.option("--poll", type=click.FloatRange(min=0.01), default=WAIT_POLL, show_default=True, metavar="SECONDS",
              help="With --wait: seconds between attempts.")
def keys_regenerate(conn: Connection, slot: str, service: str, git: bool, unused_for: str | None,
                    wait: float, poll: float) -> None:
    """Replace the SLOT key of SERVICE with a new random one; the other key keeps working.

    For a rotation without downtime: regenerate the key nobody uses, move clients to it, wait until
    the old key is unused (--if-unused-for PT15M --wait 3600), then regenerate it.
    """
    target = conn.service(service).access(_access_name(git))
    with conn.client() as client:
        if git and unused_for is None:
            version = (client.regenerate_git_primary_key(target) if slot == "primary"
                       else client.regenerate_git_secondary_key(target))
        elif unused_for is None:
            version = client.regenerate_key(target, cast(Any, slot))
        else:
            version = _regenerate_when_unused(client, target, cast(Any, slot), unused_for, wait, poll)
    if conn.output == "json":
        emit_json(version)
        return
    text = f"regenerated the {slot} key of {service}/{_access_name(git)}"
    if version.id:
        text += f": new version {version.id}"
        if version.previous_id:
            text += f" (replaces {version.previous_id})"
    click.echo(text)


# -- audit ---------------------------------------------------------------------------------------

_TIME = click.DateTime(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"])


class _AuditGroup(HelpGroup):
    """``audit SERVICE ...`` (what it always was) is ``audit list SERVICE ...``: anything that is not
    a subcommand's name is taken for the service of ``list``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_AuditGroup)
def audit() -> None:
    """The audit trail. 'list' (also 'audit SERVICE') asks a running server, with a token, like the
    other API commands; 'export' and 'prune' open the store itself (--data-dir or --database-url,
    like 'db upgrade') and need no server."""


@api_command("list", audit)
@click.argument("service")
@click.option("--operation", help="Only this operation, e.g. access.regenerate_secondary_key.")
@click.option("--kind", type=click.Choice(["changes", "reads", "refusals"]),
              help="Only changes (rotations, configuration changes), reads (listSecrets) or refusals.")
@click.option("--since", type=_TIME, help="UTC time or date.")
@click.option("--until", type=_TIME, help="UTC time or date.")
@click.option("--top", type=click.IntRange(1), help="At most this many records.")
def audit_list(conn: Connection, service: str, operation: str | None, kind: str | None, since: _dt.datetime | None,
               until: _dt.datetime | None, top: int | None) -> None:
    """[server] The audit trail of SERVICE: who read or changed which key, oldest first."""
    with conn.client() as client:
        found = client.list_audit_events(
            conn.service(service), operation=operation, top=top, kind=kind,
            since=since.replace(tzinfo=_dt.UTC) if since else None,
            until=until.replace(tzinfo=_dt.UTC) if until else None,
        )
    if conn.output == "json":
        emit_json(found)
        return
    emit_table(("TIME", "OPERATION", "OUTCOME", "STATUS", "COUNT", "PRINCIPAL", "OLD VERSION", "NEW VERSION"),
               [[e.time, e.operation, e.outcome, e.status, e.count, e.principal, e.old_version_id, e.new_version_id]
                for e in found])


# -- emulator controls ---------------------------------------------------------------------------


@click.group(cls=HelpGroup)
def emulator() -> None:
    """Emulator controls of a test server: reset, state, seed, faults (owner token, scope /)."""


#: Said with a 404 from /_emulator/: the bare "not found" hid that the controls are simply off.
CONTROLS_OFF_HINT = ("the server does not serve the emulator controls: they are off by default under --auth strict; "
                     "start it with --emulator-controls (or --auth emulator)")


@contextlib.contextmanager
def _controls(conn: Connection) -> Iterator[EmulatorControls]:
    from tenant_access.client import NotFound
    from tenant_access.testing._controls import EmulatorControls

    with conn.client() as client:
        try:
            yield EmulatorControls(client)
        except NotFound as exc:
            raise NotFoundFailure(f"{exc} ({CONTROLS_OFF_HINT})") from None


@api_command("reset", emulator, scoped=False)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def emulator_reset(conn: Connection, yes: bool) -> None:
    """Delete every service, key and audit record, and clear the fault rules."""
    _confirm(f"Delete everything on {conn.endpoint}?", yes)
    with _controls(conn) as controls:
        controls.reset()
    if conn.output == "json":
        emit_json({"reset": True})
    else:
        click.echo(f"reset {conn.endpoint}")


@api_command("state", emulator, scoped=False)
@click.option("--reveal", is_flag=True, help="Include the keys (the reads are audited).")
def emulator_state(conn: Connection, reveal: bool) -> None:
    """Every service (a seed document in JSON output; a summary as a table)."""
    with _controls(conn) as controls:
        document = controls.state(reveal=reveal)
    if conn.output == "json":
        emit_json(document)
        return
    rows = []
    for svc in document["services"]:
        for key in ("access", "git_access"):
            config = svc.get(key) or {}
            rows.append([svc["subscription"], svc["resource_group"], svc["name"], key, config.get("enabled"),
                         config.get("principal_id"), config.get("primary_key"), config.get("secondary_key")])
    emit_table(("SUBSCRIPTION", "RESOURCE GROUP", "SERVICE", "CONFIGURATION", "ENABLED", "PRINCIPAL", "PRIMARY KEY",
                "SECONDARY KEY"), rows)
    if document.get("faults"):
        click.echo(f"{len(document['faults'])} fault rule(s) active: tenant-access emulator faults list", err=True)


def _read(path: str, hint: str) -> Any:
    from tenant_access.testing._controls import read_document

    try:
        return read_document(path)
    except OSError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    except Exception as exc:  # JSON's ValueError or YAML's YAMLError: either way the file is at fault
        raise click.BadParameter(f"not valid JSON or YAML: {exc}", param_hint=hint) from None


@api_command("seed", emulator, scoped=False)
@click.argument("file", type=click.Path(dir_okay=False, exists=True, allow_dash=False))
def emulator_seed(conn: Connection, file: str) -> None:
    """Provision the services of seed document FILE (YAML or JSON); safe to repeat."""
    document = _read(file, "FILE")
    with _controls(conn) as controls:
        results = controls.seed(document)
    if conn.output == "json":
        emit_json(results)
    else:
        emit_table(("SUBSCRIPTION", "RESOURCE GROUP", "SERVICE", "RESULT"),
                   [[r["subscription"], r["resource_group"], r["name"], r["result"]] for r in results])


@emulator.group()
def faults() -> None:
    """Fault injection: answer a share of requests with 429/500/503, or delay them."""


_FAULT_HEADERS = ("ID", "OPERATION", "STATUS", "RATE", "RETRY AFTER", "LATENCY MS", "REMAINING", "INJECTED")


def _show_rules(conn: Connection, rules: list[dict[str, Any]]) -> None:
    if conn.output == "json":
        emit_json(rules)
        return
    emit_table(_FAULT_HEADERS, [[r["id"], r["operation"], r["status"], r["rate"], r["retry_after"], r["latency_ms"],
                                 r["remaining"], r["injected"]] for r in rules])


def _rule_options(func: F) -> F:
    for option in reversed([
        click.option("--operation", default="*", show_default=True,
                     help="Operation name or pattern, e.g. access.regenerate_secondary_key or access.*"),
        click.option("--status", type=click.Choice(["429", "500", "503", "none"]), default="503", show_default=True,
                     help="The error to answer with; none only delays."),
        click.option("--rate", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
                     help="Share of matching requests that get the fault."),
        click.option("--retry-after", type=click.IntRange(0, 3600), default=1, show_default=True,
                     help="Seconds, sent as Retry-After with 429 and 503."),
        click.option("--latency-ms", type=click.IntRange(0, 60_000), default=0, show_default=True,
                     help="Delay before answering."),
        click.option("--count", type=click.IntRange(1), help="Only this many times (default: until cleared)."),
    ]):
        func = option(func)
    return func


def _rule(operation: str, status: str, rate: float, retry_after: int, latency_ms: int, count: int | None
          ) -> dict[str, Any]:
    return {"operation": operation, "status": None if status == "none" else int(status), "rate": rate,
            "retry_after": retry_after, "latency_ms": latency_ms, "count": count}


@api_command("list", faults, scoped=False)
def faults_list(conn: Connection) -> None:
    """The rules in force, with how often each has fired."""
    with _controls(conn) as controls:
        _show_rules(conn, controls.faults())


@api_command("set", faults, scoped=False)
@_rule_options
@click.option("--file", "rules_file", type=click.Path(dir_okay=False, exists=True),
              help="Replace the rules with those in this YAML/JSON file (a list, or {rules: [...]}).")
def faults_set(conn: Connection, rules_file: str | None, **rule: Any) -> None:
    """Replace every rule with the one described by the flags (or with those in --file)."""
    if rules_file is not None:
        loaded = _read(rules_file, "--file")
        rules = loaded.get("rules", [loaded]) if isinstance(loaded, dict) else loaded
    else:
        rules = [_rule(**rule)]
    with _controls(conn) as controls:
        _show_rules(conn, controls.set_faults(rules))


@api_command("add", faults, scoped=False)
@_rule_options
def faults_add(conn: Connection, **rule: Any) -> None:
    """Add one rule to those in force."""
    spec = _rule(**rule)
    with _controls(conn) as controls:
        controls.add_fault(spec.pop("operation"), **spec)
        _show_rules(conn, controls.faults())


@api_command("clear", faults, scoped=False)
def faults_clear(conn: Connection) -> None:
    """Remove every rule."""
    with _controls(conn) as controls:
        controls.clear_faults()
    if conn.output == "json":
        emit_json([])
    else:
        click.echo("no fault rules")


#: What :mod:`tenant_access.cli` adds to the main group.
COMMANDS: tuple[click.Command, ...] = (services, access, keys, audit, emulator)

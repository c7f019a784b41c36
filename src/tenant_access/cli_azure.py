"""``tenant-access azure-cli``: the commands that point the Azure CLI at this server.

Registering a custom cloud, trusting a self-signed certificate and signing in a service principal
against a login endpoint that is not Microsoft's each take a setting users do not guess
(``core.instance_discovery=false`` above all); printing them from the server's own configuration
makes the recipe exact, paste-ready and always in step with how the server runs.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from tenant_access.config import Settings
from tenant_access.domain.subscriptions import TENANT_ID

DEFAULT_CLOUD = "tenant-access"
#: The variable the printed ``az login`` reads the client secret from, so it never lands in history.
SECRET_VARIABLE = "AZURE_CLIENT_SECRET"  # noqa: S105 (a variable name, not a secret)


def server_url(settings: Settings) -> str:
    """Where a client reaches the server: its public URL when one is set (``--public-url``, which
    its cloud metadata and tokens name too); else, on this host, a wildcard address is reached over
    loopback (which the self-signed certificate names)."""
    if settings.public_url is not None:
        return settings.public_url
    host = settings.host
    if host in ("0.0.0.0", "", "*"):  # noqa: S104 (a wildcard is mapped to loopback here, not bound)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if settings.tls else 'http'}://{host}:{settings.port}"


def certificate(settings: Settings) -> Path:
    from tenant_access.tls import CERT_FILE, tls_dir

    return settings.tls_cert if settings.tls_cert is not None else tls_dir(settings.data_dir) / CERT_FILE


def commands(settings: Settings, *, url: str | None = None, client_id: str | None = None,
             cloud: str = DEFAULT_CLOUD, cert: Path | None = None) -> list[str]:
    """The shell lines, comments included, in the order they must run."""
    base = (url or server_url(settings)).rstrip("/") + "/"
    lines = ["# Point the Azure CLI at tenant-access (a server started with --api-style azure).",
             "# Optional: keep this cloud's sign-in apart from your Azure one:",
             "#   export AZURE_CONFIG_DIR=~/.azure-tenant-access"]
    if settings.api_style != "azure":
        lines.append("# NOTE: this configuration serves the seed format; the Azure CLI needs --api-style azure.")
    if base.startswith("https://"):
        lines += ["# az trusts the server's certificate through this variable (it replaces az's trust store:",
                  "# use a bundle that also holds the public CAs if the same shell talks to Azure).",
                  f"export REQUESTS_CA_BUNDLE={shlex.quote(str(cert or certificate(settings)))}"]
    else:
        lines.append("# az refuses to send tokens over plain HTTP: serve HTTPS (--tls) for az login and az rest.")
    lines += [
        f"az cloud register --name {shlex.quote(cloud)} --endpoint-resource-manager {shlex.quote(base)}",
        f"az cloud set --name {shlex.quote(cloud)}",
        "# The login endpoint is this server, not Microsoft's: MSAL must not look it up there.",
        "az config set core.instance_discovery=false",
    ]
    if client_id is None:
        lines += ["# A service principal: tenant-access principals create --role owner --scope / "
                  "(prints its client id and secret).",
                  "CLIENT_ID='<client id>'"]
    else:
        lines.append(f"CLIENT_ID={shlex.quote(client_id)}")
    lines += [
        f"# export {SECRET_VARIABLE}='<client secret>'   (read from the environment, kept out of the history)",
        f"az login --service-principal --tenant {TENANT_ID} --username \"$CLIENT_ID\" "
        f"--password=\"${SECRET_VARIABLE}\"",  # "=": a secret may begin with "-"
    ]
    return lines


@click.command("azure-cli")
@click.option("--host", help="The server's --host. [env TENANT_ACCESS_HOST; default 127.0.0.1]")
@click.option("--port", type=int, help="The server's --port. [env TENANT_ACCESS_PORT; default 8700]")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="The server's data dir (where its certificate is). [env TENANT_ACCESS_DATA_DIR]")
@click.option("--tls", is_flag=True, default=None, help="The server serves HTTPS. [env TENANT_ACCESS_TLS]")
@click.option("--tls-cert", type=click.Path(path_type=Path, dir_okay=False),
              help="The certificate the server serves (implies --tls). [env TENANT_ACCESS_TLS_CERT]")
@click.option("--api-style", type=click.Choice(["seed", "azure"]), help="[env TENANT_ACCESS_API_STYLE]")
@click.option("--public-url", help="The server's --public-url. [env TENANT_ACCESS_PUBLIC_URL]")
@click.option("--url", help="The server's URL as clients reach it, when not host and port (a proxy, port 0).")
@click.option("--client-id", help="The service principal to sign in with (tenant-access principals create).")
@click.option("--cloud-name", default=DEFAULT_CLOUD, show_default=True, help="The name az gives the cloud.")
def azure_cli(url: str | None, client_id: str | None, cloud_name: str, tls_cert: Path | None,
              **options: object) -> None:
    """Print the commands that register this server as a cloud in the Azure CLI and sign in to it."""
    overrides = {k: v for k, v in options.items() if v is not None}
    if tls_cert is not None:
        overrides["tls"] = True
    try:
        settings = Settings.from_env(None, **overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    for line in commands(settings, url=url, client_id=client_id, cloud=cloud_name, cert=tls_cert):
        click.echo(line)

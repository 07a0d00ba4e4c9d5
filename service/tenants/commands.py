"""`competence-bridge tenant …` and the `--tenant` option of the other commands
(docs/tenants.md, "Adding a tenant"; deploy/README.md)."""
from __future__ import annotations

import json
import sys

import click

from service.platform import db
from service.platform.commands import Refused, database_url, settings as load_settings
from service.tenants import tenants

tenant_option = click.option(
    "--tenant", default="default", show_default=True, metavar="SLUG",
    help="The tenant (organisation) the command acts in.")


def tenant_id(url: str, slug: str) -> int:
    """The id of the tenant of that slug; refused (exit 2) when there is none."""
    with db.connect(url) as conn:
        row = conn.execute(db.q("tenant_by_slug"), {"slug": slug}).fetchone()
    if row is None:
        raise Refused(f"no tenant {slug!r} (competence-bridge tenant list shows them)")
    return row["id"]


def _read_secrets() -> dict:
    """The secrets object from standard input, never from the command line."""
    raw = sys.stdin.read()
    try:
        return json.loads(raw)
    except ValueError:
        raise Refused('standard input must be JSON: {"client_secret": "…", '
                      '"webhook_secrets": ["whsec_…"]}') from None


@click.group()
def tenant() -> None:
    """The organisations this deployment serves."""


@tenant.command("create")
@click.option("--slug", required=True, help="Lower-case letters, digits and '-': its webhook URL's last part.")
@click.option("--name", required=True)
@click.option("--infocaption-base-url", required=True, help="e.g. https://kommun.infocaption.com")
@click.option("--client-id", required=True)
@click.option("--time-zone", default="Europe/Stockholm", show_default=True)
def create(slug: str, name: str, infocaption_base_url: str, client_id: str, time_zone: str) -> None:
    """Add a tenant; reads {"client_secret", "webhook_secrets": [...]} as JSON from standard input."""
    settings = load_settings()
    secrets = _read_secrets()
    try:
        with db.connect(database_url(settings)) as conn:
            new_id = tenants.create(conn, settings, slug=slug, name=name,
                                    infocaption_base_url=infocaption_base_url,
                                    client_id=client_id, secrets=secrets, time_zone=time_zone)
    except (tenants.TenantError, tenants.crypto.NotConfigured) as exc:
        raise Refused(str(exc)) from None
    click.echo(f"tenant {slug!r} created (id {new_id}); its webhook URL: /webhooks/infocaption/{slug}")


@tenant.command("set-secrets")
@click.option("--slug", required=True)
def set_secrets(slug: str) -> None:
    """Replace a tenant's secrets (rotation); reads the same JSON object from standard input."""
    settings = load_settings()
    secrets = _read_secrets()
    try:
        with db.connect(database_url(settings)) as conn:
            tenants.set_secrets(conn, settings, slug, secrets)
    except (tenants.TenantError, tenants.crypto.NotConfigured) as exc:
        raise Refused(str(exc)) from None
    click.echo(f"secrets of tenant {slug!r} replaced")


@tenant.command("list")
def list_() -> None:
    """Every tenant: id, slug, active, name (never a secret)."""
    settings = load_settings()
    with db.connect(database_url(settings)) as conn:
        rows = tenants.list_public(conn)
    for row in rows:
        state = "active" if row["active"] else "inactive"
        click.echo(f"{row['id']}\t{row['slug']}\t{state}\t{row['name']}")


@tenant.command("show")
@click.option("--slug", required=True)
def show(slug: str) -> None:
    """One tenant as JSON, without its secrets (it says how many webhook secrets it has)."""
    settings = load_settings()
    try:
        with db.connect(database_url(settings)) as conn:
            found = tenants.by_slug(conn, settings, slug)
    except tenants.crypto.NotConfigured as exc:
        raise Refused(str(exc)) from None
    if found is None:
        raise Refused(f"no tenant {slug!r}")
    click.echo(json.dumps(found.public(), indent=2, ensure_ascii=False))


@tenant.command("deactivate")
@click.option("--slug", required=True)
def deactivate(slug: str) -> None:
    """Close a tenant: its webhooks are answered 404 and the scheduler passes it by."""
    _set_active(slug, False)


@tenant.command("activate")
@click.option("--slug", required=True)
def activate(slug: str) -> None:
    """Open a tenant again."""
    _set_active(slug, True)


def _set_active(slug: str, active: bool) -> None:
    settings = load_settings()
    try:
        with db.connect(database_url(settings)) as conn:
            tenants.set_active(conn, slug, active)
    except tenants.TenantError as exc:
        raise Refused(str(exc)) from None
    click.echo(f"tenant {slug!r} {'activated' if active else 'deactivated'}")

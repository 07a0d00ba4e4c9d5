"""The service's sub-commands of `competence-bridge` (workers/cli.py adds the workers')."""
from __future__ import annotations

import os
import sys

import click

from service.access.tokens import PERMISSIONS
from service.platform import config as config_mod
from service.platform.commands import Refused
from service.platform.commands import database_url as _database_url
from service.platform.commands import settings as _settings
from service.tenants.commands import tenant, tenant_id as _tenant_id, tenant_option

WEB_WORKERS, WEB_THREADS = config_mod.WEB_WORKERS, config_mod.WEB_THREADS  # bench/ingest.py


@click.group()
def main() -> None:
    """Competence Bridge: InfoCaption course results become competence grants."""
    from service.platform.observability import configure_logging

    configure_logging(config_mod.log_level())


main.add_command(tenant)


@main.command()
def migrate() -> None:
    """Apply pending database migrations (idempotent)."""
    from service.platform import db
    from service.people.rekey import rekey_emails
    from service.platform.migrate import migrate as run

    from service.platform import tenancy
    from service.tenants import tenants

    settings = _settings()
    url = _database_url(settings)
    with db.connect(url, autocommit=True) as conn:
        applied = run(conn)
        tenants.sync_default(conn, settings)
    # Keys made under an older rule can only be the tenant `default`'s: the rule is older than
    # tenants (docs/tenants.md).
    with db.tenant_connection(url, tenancy.DEFAULT_ID, autocommit=True) as conn:
        rekey_emails(conn)
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
        click.echo(f"{len(applied)} migration(s) applied")
    else:
        click.echo("database is up to date: nothing to apply")


APP = "service.app:create_app()"


def gunicorn_args(port: int, *, workers: int, threads: int, host: str = "0.0.0.0",
                  app: str = APP) -> list[str]:
    """The gunicorn command line of `web` (bench/ runs other apps under the same one)."""
    return [
        "gunicorn",
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "--threads", str(threads),
        "--worker-class", "gthread",
        "--graceful-timeout", "20",
        "--access-logfile", "-",
        "--no-control-socket",
        "--config", "python:service.platform.gunicorn_conf",  # prometheus multiprocess mode, JSON logs
        app,
    ]


@main.command()
@click.option("--workers", type=int, default=lambda: config_mod.web_server().workers)
@click.option("--threads", type=int, default=lambda: config_mod.web_server().threads)
def web(workers: int, threads: int) -> None:
    """Serve webhooks, the admin API and health endpoints under gunicorn on $PORT."""
    settings = _settings()
    if not settings.secret_key:
        # Webhooks and the API need no SECRET_KEY: they keep working, and only the console,
        # whose sessions it signs, answers 503 until it is set (docs/console.md, "Sessions").
        click.echo("SECRET_KEY is not set: the console answers 503 until it is; webhooks and "
                   "the API are served", err=True)
    # Resolve the embedded database once here, so gunicorn's workers share one server.
    os.environ["DATABASE_URL"] = _database_url(settings)
    # WEB_HOST=127.0.0.1 behind the buffering proxy, so that nothing reaches gunicorn around it.
    args = gunicorn_args(settings.port, workers=workers, threads=threads,
                         host=config_mod.web_server().host)
    os.execvp(sys.executable, [sys.executable, "-m", *args])


@main.command("create-token")
@click.option("--name", required=True, help="Who uses the token; shown in the audit log.")
@click.option("--permission", "permissions", multiple=True,
              type=click.Choice(PERMISSIONS))
@tenant_option
@click.option("--platform", is_flag=True,
              help="A platform token: reads every tenant's ops endpoints and creates tenants, nothing else.")
def create_token(name: str, permissions: tuple[str, ...], tenant: str, platform: bool) -> None:
    """Create an API token; it is printed once, alone on the last line."""
    from service.access import tokens
    from service.platform import db

    if platform == bool(permissions):
        raise Refused("give --permission (a tenant's token) or --platform, not both or neither")
    settings = _settings()
    url = _database_url(settings)
    try:
        if platform:
            with db.connect(url) as conn:
                token = tokens.create(conn, name, [], platform=True)
        else:
            with db.tenant_connection(url, _tenant_id(url, tenant)) as conn:
                token = tokens.create(conn, name, list(permissions))
    except tokens.NameTaken as exc:
        raise Refused(str(exc)) from None
    what = "the platform" if platform else ", ".join(permissions) + f" in tenant {tenant!r}"
    click.echo(f"token for {name!r} with {what} (store it now; it is not kept):")
    click.echo(token)


@main.command("create-user")
@click.option("--username", required=True, help="The name to sign in to the console with.")
@click.option("--permission", "permissions", multiple=True, required=True,
              type=click.Choice(PERMISSIONS))
@tenant_option
def create_user(username: str, permissions: tuple[str, ...], tenant: str) -> None:
    """Create a console user; the password is read from standard input (docs/console.md)."""
    from service.console import users
    from service.platform import db

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    settings = _settings()
    url = _database_url(settings)
    try:
        with db.tenant_connection(url, _tenant_id(url, tenant)) as conn:
            users.create_user(conn, username, password, list(permissions))
    except users.UsernameTaken as exc:
        raise Refused(str(exc)) from None
    except ValueError as exc:
        raise Refused(str(exc)) from None
    click.echo(f"console user {username!r} with {', '.join(permissions)}: sign in at /login")


@main.command("revoke-token")
@click.option("--name", required=True)
@tenant_option
def revoke_token(name: str, tenant: str) -> None:
    """Revoke the active token of that name."""
    from service.access import tokens
    from service.platform import db

    settings = _settings()
    url = _database_url(settings)
    with db.tenant_connection(url, _tenant_id(url, tenant)) as conn:
        count = tokens.revoke(conn, name)
    if not count:
        raise click.ClickException(f"no active token named {name!r}")
    click.echo(f"revoked {count} token(s) named {name!r}")


@main.command("send-webhook")
@click.option("--email", required=True, help="The participant's email.")
@click.option("--course", "course_id", type=int, required=True, help="The InfoCaption course id.")
@click.option("--course-name", default="HLR vuxen", show_default=True)
@click.option("--failed", is_flag=True, help="A failed result (default: passed).")
@click.option("--result-id", default=None, help="Default: a new one (the same id again is a redelivery).")
@click.option("--url", default=None, help="Default: this machine's web process on $PORT.")
def send_webhook(email: str, course_id: int, course_name: str, failed: bool, result_id: str | None,
                 url: str | None) -> None:
    """Send one course.completed webhook signed as InfoCaption signs it (the first secret)."""
    import json
    import uuid
    from datetime import datetime, timezone

    import requests
    from standardwebhooks import Webhook

    settings = _settings()
    now = datetime.now(timezone.utc)
    body = json.dumps({
        "type": "course.completed",
        "timestamp": now.isoformat(timespec="seconds"),
        "data": {
            "resultId": result_id or f"r-cli-{uuid.uuid4().hex[:12]}",
            "course": {"id": course_id, "name": course_name, "guideType": 14},
            "user": {"email": email, "firstName": None, "lastName": None},
            "passed": not failed,
            "score": 40 if failed else 90,
            "completedAt": now.isoformat(timespec="seconds"),
        },
    }, ensure_ascii=False)
    msg_id = f"msg_{uuid.uuid4().hex}"
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": Webhook(settings.webhook_secrets[0]).sign(msg_id, now, body),
               "content-type": "application/json"}
    target = url or f"http://127.0.0.1:{settings.port}/webhooks/infocaption"
    try:
        answer = requests.post(target, data=body.encode(), headers=headers, timeout=10)
    except requests.RequestException as exc:
        raise click.ClickException(f"{target}: {exc.__class__.__name__}") from None
    click.echo(f"{answer.status_code} {answer.reason} (webhook-id {msg_id})")
    if answer.status_code >= 300:
        click.echo(answer.text.strip()[:2000])
        sys.exit(1)


# Sub-commands that live with their room (one line each; keep this block sorted).
# (simulate, seed-demo: service/demo/commands.py; status: service/ops/status.py)
from service.demo.commands import seed_demo, simulate  # noqa: E402
main.add_command(seed_demo)
main.add_command(simulate)
from service.demo.mailsink import mail_sink  # noqa: E402
main.add_command(mail_sink)
from service.ops.status import status  # noqa: E402
main.add_command(status)

if __name__ == "__main__":
    main()

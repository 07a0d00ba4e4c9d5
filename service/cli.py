"""The `competence-bridge` command: one sub-command per process and admin task."""
from __future__ import annotations

import os
import sys

import click

from service import config as config_mod

# gunicorn for `web`: processes, and threads in each (WEB_CONCURRENCY, WEB_THREADS override).
WEB_WORKERS = 2
WEB_THREADS = 8


class Refused(click.ClickException):
    """A request the rules refuse: one line on standard error, exit status 2 (docs/processes.md)."""

    exit_code = 2


def _settings() -> config_mod.Settings:
    try:
        return config_mod.load()
    except config_mod.ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _serve_metrics(role: str) -> None:
    """Serve this process's counters on METRICS_PORT (deploy/README.md, "Metrics")."""
    from service.metrics import metrics_port, serve_metrics

    try:
        serve_metrics(metrics_port(role))
    except config_mod.ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _database_url(settings: config_mod.Settings) -> str:
    from service import db

    return db.database_url(settings)


@click.group()
def main() -> None:
    """Competence Bridge: InfoCaption course results become competence grants."""
    from service.observability import configure_logging

    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))


@main.command()
def migrate() -> None:
    """Apply pending database migrations (idempotent)."""
    from service import db
    from service.db.migrate import migrate as run

    settings = _settings()
    with db.connect(_database_url(settings), autocommit=True) as conn:
        applied = run(conn)
    if applied:
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
        click.echo(f"{len(applied)} migration(s) applied")
    else:
        click.echo("database is up to date: nothing to apply")


@main.command()
@click.option("--workers", type=int, default=lambda: int(os.environ.get("WEB_CONCURRENCY", WEB_WORKERS)))
@click.option("--threads", type=int, default=lambda: int(os.environ.get("WEB_THREADS", WEB_THREADS)))
def web(workers: int, threads: int) -> None:
    """Serve webhooks, the admin API and health endpoints under gunicorn on $PORT."""
    settings = _settings()
    # Resolve the embedded database once here, so gunicorn's workers share one server.
    os.environ["DATABASE_URL"] = _database_url(settings)
    args = [
        "gunicorn",
        # WEB_HOST=127.0.0.1 behind the buffering proxy, so that nothing reaches gunicorn around it.
        "--bind", f"{os.environ.get('WEB_HOST', '0.0.0.0')}:{settings.port}",
        "--workers", str(workers),
        "--threads", str(threads),
        "--worker-class", "gthread",
        "--graceful-timeout", "20",
        "--access-logfile", "-",
        "--no-control-socket",
        "--config", "python:service.gunicorn_conf",  # prometheus multiprocess mode, JSON logs
        "service.app:create_app()",
    ]
    os.execvp(sys.executable, [sys.executable, "-m", *args])


@main.command()
@click.option("--queue", type=click.Choice(["events", "backfill", "all"]), default="all")
def worker(queue: str) -> None:
    """Consume queued events and commit their grants."""
    from workers.run import run_workers

    settings = _settings()
    _serve_metrics("worker")
    run_workers(settings, _database_url(settings), queue)


@main.command()
def scheduler() -> None:
    """Reconcile linked courses and refresh the catalog; one active at a time."""
    from workers.scheduler import run_scheduler

    settings = _settings()
    _serve_metrics("scheduler")
    run_scheduler(settings, _database_url(settings))


@main.command("create-token")
@click.option("--name", required=True, help="Who uses the token; shown in the audit log.")
@click.option("--permission", "permissions", multiple=True, required=True,
              type=click.Choice(["administer_competence_integrations", "administer_competence_settings"]))
def create_token(name: str, permissions: tuple[str, ...]) -> None:
    """Create an API token; it is printed once, alone on the last line."""
    from service import db, tokens

    settings = _settings()
    try:
        with db.connect(_database_url(settings)) as conn:
            token = tokens.create(conn, name, list(permissions))
    except tokens.NameTaken as exc:
        raise Refused(str(exc)) from None
    click.echo(f"token for {name!r} with {', '.join(permissions)} (store it now; it is not kept):")
    click.echo(token)


@main.command("revoke-token")
@click.option("--name", required=True)
def revoke_token(name: str) -> None:
    """Revoke the active token of that name."""
    from service import db, tokens

    settings = _settings()
    with db.connect(_database_url(settings)) as conn:
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
# (simulate, backfill: service/infocaption/commands.py; status: service/ops_cli.py)
from service.infocaption.commands import backfill, seed_demo, simulate  # noqa: E402
main.add_command(backfill)
main.add_command(seed_demo)
main.add_command(simulate)
from service.ops_cli import status  # noqa: E402
main.add_command(status)

if __name__ == "__main__":
    main()

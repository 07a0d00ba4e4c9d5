"""`competence-bridge status`: is work flowing? Queues, recent grants, unmatched, backfills."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

import click

from service.platform.observability import mask_email, scrub_text

BAR_WIDTH = 72
NOT_RUNNING = 3  # the exit status of `status` when nothing runs (LSB init scripts use 3 too)


def _read(settings, database_url: str, recent: int) -> dict:
    """Everything the report shows; a dependency that cannot be read is named, not fatal."""
    from service.platform import db
    from service.ops.state import database_state, queue_stats

    report: dict = {"broker": None, "database": None}
    try:
        report["queues"] = [s.__dict__ for s in queue_stats(settings, database_url)]
    except Exception as exc:  # noqa: BLE001 - shown to the operator
        report["broker"] = scrub_text(f"{exc.__class__.__name__}: {exc}")
    try:
        with db.connect(database_url, connect_timeout=5) as conn:
            state = database_state(conn, timeout_s=10)
            grants = conn.execute(db.q("obs_recent_grants"), {"limit": recent}).fetchall()
    except Exception as exc:  # noqa: BLE001 - shown to the operator
        report["database"] = scrub_text(f"{exc.__class__.__name__}: {exc}")
    else:
        report.update(
            results=state.results,
            unmatched={"results": state.unmatched_results, "emails": state.unmatched_emails},
            dead_letters_pending=sum(state.dead_letters_pending.values()),
            event_deliveries={"pending": state.event_deliveries.get("pending", 0),
                              "failed": state.event_deliveries.get("failed", 0)},
            recent_grants=[{**g, "email": mask_email(g["email"])} for g in grants],
            backfills=[b for b in state.backfills if b["state"] == "running"],
        )
    return report


def _progress_bar(b: dict, now: datetime) -> str:
    from tqdm import tqdm

    started = b.get("started_at")
    elapsed = max(0.0, (now - started).total_seconds()) if started else 0.0
    bar = tqdm.format_meter(b["processed"], b["total"] or None, elapsed, ncols=BAR_WIDTH,
                            unit=" results")
    return (f"  link {b['id']} (course {b['course_id']} → competence {b['competence_id']})\n"
            f"    {bar}\n"
            f"    granted {b['granted']}, already held {b['already_held']}, "
            f"not passed {b['not_passed']}, unmatched {b['unmatched']}, errors {b['errors']}")


def _print(report: dict, recent: int, tz) -> None:
    echo = click.echo
    echo("Queues")
    if report["broker"]:
        echo(f"  broker unreachable: {report['broker']}")
    else:
        width = max(len(q["name"]) for q in report["queues"])
        for q in report["queues"]:
            echo(f"  {q['name']:<{width}}  depth {q['depth']:>7}  consumers {q['consumers']:>3}")
    if report["database"]:
        echo(f"\ndatabase unreachable: {report['database']}")
        return
    echo(f"  dead letters pending: {report['dead_letters_pending']}")
    d = report["event_deliveries"]
    echo(f"  outgoing event deliveries: {d['pending']} pending, {d['failed']} failed")
    echo("\nResults")
    echo("  " + ", ".join(f"{k} {v}" for k, v in report["results"].items()))
    u = report["unmatched"]
    echo(f"  unmatched: {u['results']} result(s) from {u['emails']} email(s)")
    echo(f"\nRecent grants (last {recent})")
    if not report["recent_grants"]:
        echo("  none")
    for g in report["recent_grants"]:
        valid = f"{g['valid_from']}..{g['valid_to'] or ''}"
        echo(f"  {g['created_at'].astimezone(tz):%Y-%m-%d %H:%M:%S %z}  #{g['id']}  {g['email']}  "
             f"{g['competence']} (course {g['course_id'] or '-'}, {g['source']}, valid {valid})")
    echo("\nBackfills running")
    if not report["backfills"]:
        echo("  none")
    now = datetime.now(timezone.utc)
    for b in report["backfills"]:
        echo(_progress_bar(b, now))


@click.command()
@click.option("--recent", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="How many of the latest grants to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def status(recent: int, as_json: bool) -> None:
    """Show queue depths, recent grants, unmatched results and running backfills.

    Exits 1 when the database or the broker cannot be reached, 3 (as an init script's
    status does) when nothing runs: the embedded database is not started for a look.
    """
    from service.platform import config as config_mod
    from service.platform import db

    try:
        settings = config_mod.load()
    except config_mod.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.embedded_database and not db.embedded_database_running(settings):
        message = (f"nothing runs: the embedded database under {settings.data_dir} is not running "
                   "(`make run` starts the demo; a deployment sets DATABASE_URL)")
        click.echo(json.dumps({"running": False, "message": message}) if as_json else message)
        sys.exit(NOT_RUNNING)
    report = _read(settings, db.database_url(settings), recent)
    if as_json:
        click.echo(json.dumps(report, default=str, ensure_ascii=False))
    else:
        _print(report, recent, settings.tz)
    if report["broker"] or report["database"]:
        sys.exit(1)

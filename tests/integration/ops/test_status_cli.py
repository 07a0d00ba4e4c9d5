"""`competence-bridge status` on real PostgreSQL and RabbitMQ."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from workers.cli import main
from tests.conftest import completed_event, wait_for
from tests.integration.ops.metrics_util import add_employee, post, seed_course_link, set_backfill
from tests.integration.ops.tcp_proxy import TcpProxy
from tests.unit.ops.sentry_util import ANY_EMAIL

pytestmark = pytest.mark.integration


def env_of(settings, **override) -> dict:
    env = {
        "DATABASE_URL": settings.database_url, "BROKER_URL": settings.broker_url,
        "QUEUE_PREFIX": settings.queue_prefix, "INFOCAPTION_BASE_URL": settings.infocaption_base_url,
        "INFOCAPTION_WEBHOOK_SECRETS": " ".join(settings.webhook_secrets),
        "INFOCAPTION_CLIENT_ID": settings.infocaption_client_id,
        "INFOCAPTION_CLIENT_SECRET": settings.infocaption_client_secret,
    }
    env.update(override)
    return env


def run_status(settings, *args, **override):
    return CliRunner().invoke(main, ["status", *args], env=env_of(settings, **override))


def test_status_shows_queues_grants_unmatched_and_running_backfills(conn, client, run_worker, settings):
    link, comp = seed_course_link(conn)
    set_backfill(conn, link, "running", total=200, processed=50, granted=30, already_held=5,
                 not_passed=5, unmatched=9, errors=1)
    add_employee(conn, "anna.andersson@kommun.se")
    # Two events wait in the queue before any worker runs...
    assert post(client, completed_event("r-1", "anna.andersson@kommun.se")).status_code == 202
    assert post(client, completed_event("r-2", "nobody@kommun.se")).status_code == 202
    events = f"{settings.queue_prefix}.events"
    wait_for(lambda: f"{events}" in (out := run_status(settings).output) and "depth       2" in out,
             message="two messages queued")

    # ...and are then processed.
    run_worker()
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM results WHERE status <> 'received'").fetchone()["n"] == 2,
             message="both results decided")
    result = run_status(settings)
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"  {events}    depth       0  consumers   1" in out
    assert "dead letters pending: 0" in out
    assert "outgoing event deliveries: 0 pending, 0 failed" in out
    assert "unmatched: 1 result(s) from 1 email(s)" in out
    grant_lines = [line for line in out.splitlines() if line.strip().startswith("20") and " #" in line]
    assert len(grant_lines) == 1 and "a***@kommun.se" in grant_lines[0] and "HLR (course 4711, webhook" in grant_lines[0]
    lines = out.splitlines()
    at = lines.index(f"  link {link} (course 4711 → competence {comp})")
    assert "25%" in lines[at + 1] and "50/200" in lines[at + 1]
    assert "granted 30, already held 5, not passed 5, unmatched 9, errors 1" in out
    assert [m.group(0) for m in ANY_EMAIL.finditer(out) if "***@" not in m.group(0)] == []

    report = json.loads(run_status(settings, "--json").output)
    assert {q["name"]: (q["depth"], q["consumers"]) for q in report["queues"]}[events] == (0, 1)
    assert report["unmatched"] == {"results": 1, "emails": 1}
    assert [(b["id"], b["processed"], b["total"]) for b in report["backfills"]] == [(link, 50, 200)]
    assert [g["email"] for g in report["recent_grants"]] == ["a***@kommun.se"]


def test_status_exits_1_and_names_an_unreachable_broker(conn, settings):
    proxy = TcpProxy(5672)
    proxy.cut()
    try:
        result = run_status(settings, BROKER_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}//")
    finally:
        proxy.close()
    assert result.exit_code == 1
    assert "broker unreachable:" in result.output
    assert "Recent grants (last 10)\n  none" in result.output  # the database part still shows

"""The worker process is SIGKILLed in the middle of 5,000 events and started again:
every event ends processed exactly once in effect (docs/rules.md, rule 9), on RabbitMQ and on the
embedded queue; nothing applied is left on (or comes back to) the queue."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from service.platform.messaging import Publisher
from service.ingest.schema import parse_event
from tests.conftest import completed_event, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
EVENTS = 5_000
EMPLOYEES = 1_000
COURSES = 5


def worker_env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "BROKER_URL"}
    if settings.broker_url:
        env["BROKER_URL"] = settings.broker_url
    env.update(
        DATABASE_URL=settings.database_url,
        QUEUE_PREFIX=settings.queue_prefix,
        INFOCAPTION_BASE_URL=settings.infocaption_base_url,
        INFOCAPTION_CLIENT_ID="test",
        INFOCAPTION_CLIENT_SECRET="test",
        INFOCAPTION_WEBHOOK_SECRETS=" ".join(settings.webhook_secrets),
        BATCH_SIZE="100",
        LOG_LEVEL="WARNING",
    )
    return env


def start_worker(settings) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "worker", "--queue", "events"],
        cwd=ROOT, env=worker_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


@pytest.fixture(params=["rabbitmq", "embedded"])
def transport_settings(request):
    return request.getfixturevalue("settings" if request.param == "rabbitmq" else "embedded_settings")


def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(conn, transport_settings, pool):
    from service.platform import messaging
    from service.people.email import normalize_email

    settings = transport_settings

    conn.execute("INSERT INTO competences (id, name, kind) VALUES (1, 'Vård', 'main_group')")
    conn.execute("INSERT INTO competences (id, parent_id, name, kind) VALUES (2, 1, 'Akut', 'group')")
    for c in range(COURSES):
        conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (%s, %s, 14)", (100 + c, f"Kurs {c}"))
        conn.execute(
            "INSERT INTO competences (id, parent_id, name, kind, default_valid_days) VALUES (%s, 2, %s, 'competence', 365)",
            (10 + c, f"K {c}"))
        conn.execute("INSERT INTO links (course_id, competence_id, created_by) VALUES (%s, %s, 'test')", (100 + c, 10 + c))
    with conn.cursor().copy("COPY employees (email, email_normalized) FROM STDIN") as copy:
        for e in range(EMPLOYEES):
            copy.write_row((f"E{e}@Kommun.se", normalize_email(f"E{e}@Kommun.se")))

    expected_pairs = set()
    publisher = Publisher(settings, pool)
    for i in range(EVENTS):
        emp, course, passed = i % EMPLOYEES, 100 + (i // EMPLOYEES) % COURSES, i % 10 != 0
        body = parse_event(completed_event(f"r-{i}", f"e{emp}@KOMMUN.se", course_id=course, passed=passed,
                                           completed_at=f"2026-11-{1 + i % 28:02d}T12:00:00Z"))
        body["webhook_id"] = f"w-{i}"
        body["received_at"] = body["timestamp"]
        publisher.publish(body)
        if i % 10 == 5:  # a redelivery of the same webhook
            publisher.publish(body)
        if passed:
            expected_pairs.add((emp, course))
    publisher.close()

    def processed() -> int:
        return conn.execute("SELECT count(*) AS n FROM webhook_receipts").fetchone()["n"]

    kills = 0
    worker = start_worker(settings)
    for threshold in (800, 2_000, 3_500):
        wait_for(lambda: processed() >= threshold, timeout=120, message=f"{threshold} events processed")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        kills += 1
        worker = start_worker(settings)
    try:
        wait_for(lambda: processed() == EVENTS, timeout=180, message="all events processed")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert kills == 3
    assert conn.execute("SELECT count(*) AS n FROM results").fetchone()["n"] == EVENTS
    assert conn.execute("SELECT count(*) AS n FROM dead_letters").fetchone()["n"] == 0
    rows = conn.execute(
        "SELECT e.email_normalized, g.competence_id FROM grants g JOIN employees e ON e.id = g.employee_id"
    ).fetchall()
    got = {(int(r["email_normalized"][1:].split("@")[0]), r["competence_id"] + 90) for r in rows}
    assert len(rows) == len(got)  # no duplicate (the constraint would refuse one anyway)
    assert got == expected_pairs
    failed = conn.execute("SELECT count(*) AS n FROM results WHERE status = 'failed'").fetchone()["n"]
    assert failed == EVENTS // 10
    assert worker.returncode == 0, err.decode()[-2000:]
    assert all(q.depth == 0 for q in messaging.queue_stats(settings, pool.conninfo))

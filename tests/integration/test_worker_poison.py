"""No single event can stop the result worker: events that the edge would refuse today, put on
the queue directly (an older web process, a replay, another producer), are dead-lettered in a
form that can always be stored, and the next event is processed. On both transports."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from service.platform.messaging import Publisher
from tests.conftest import completed_event, wait_for
from tests.integration.test_pipeline import add_employee, seed_links
from tests.integration.test_worker import count, event
from workers.base import is_transient, storable

pytestmark = pytest.mark.integration


def _poison_then_normal(conn, settings, pool, run_worker_for, poison: dict) -> dict:
    seed_links(conn)
    add_employee(conn, "anna@kommun.se")
    publisher = Publisher(settings, pool)
    publisher.publish(poison)
    publisher.publish(event(completed_event("r-after", "anna@kommun.se"), "w-after"))
    publisher.close()
    run_worker_for(settings)
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM grants") == 2, message="the next event granted")
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM dead_letters") == 1, message="one dead letter")
    return conn.execute("SELECT webhook_id, event_type, payload, error FROM dead_letters").fetchone()


@pytest.fixture
def run_worker_for(pool):
    import threading

    from workers.results import ResultWorker

    started = []

    def start(settings):
        worker = ResultWorker(settings, pool, batch_wait_ms=200)  # both events in one batch
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_a_lone_surrogate_is_dead_lettered_escaped_and_the_queue_goes_on(conn, settings, pool, run_worker_for):
    poison = event(completed_event("r-bad", "anna@kommun.se"), "w-bad")
    poison["result"]["first_name"] = "\ud800"  # JSON carries it as an escape; UTF-8 cannot
    letter = _poison_then_normal(conn, settings, pool, run_worker_for, poison)
    assert letter["webhook_id"] == "w-bad"
    assert letter["payload"]["result"]["first_name"] == "\\ud800"  # kept, escaped
    assert "UnicodeEncodeError" in letter["error"]
    assert count(conn, "SELECT count(*) AS n FROM results WHERE id = 'r-bad'") == 0


@pytest.mark.parametrize("transport", ["rabbitmq", "embedded"])
def test_a_webhook_id_over_the_index_limit_is_permanent_not_retried_forever(
        conn, settings, embedded_settings, pool, run_worker_for, transport):
    chosen = settings if transport == "rabbitmq" else embedded_settings
    long_id = "w-" + os.urandom(3500).hex()  # 7,002 characters that do not compress
    poison = event(completed_event("r-long", "anna@kommun.se"), long_id)
    letter = _poison_then_normal(conn, chosen, pool, run_worker_for, poison)
    assert letter["webhook_id"] == long_id[:200]  # cut to what the column is meant for
    assert "ProgramLimitExceeded" in letter["error"]  # SQLSTATE 54000: permanent


def test_errors_are_sorted_by_sqlstate_class(database_url):
    with psycopg.connect(database_url) as c:
        for sql in ("SELECT 1/0", "SELECT 'x'::int"):  # 22012, 22P02: data exceptions
            with pytest.raises(psycopg.DataError) as bad:
                c.execute(sql)
            c.rollback()
            assert not is_transient(bad.value), bad.value.sqlstate
        c.execute("CREATE TEMP TABLE t (k text PRIMARY KEY)")
        c.execute("INSERT INTO t VALUES ('a')")
        with pytest.raises(psycopg.errors.UniqueViolation) as dup:
            c.execute("INSERT INTO t VALUES ('a')")
        assert not is_transient(dup.value)  # 23505 integrity
        c.rollback()
        c.execute("CREATE TEMP TABLE t (k text PRIMARY KEY)")
        with pytest.raises(psycopg.errors.ProgramLimitExceeded) as big:
            c.execute("INSERT INTO t VALUES (%s)", (os.urandom(6000).hex(),))  # incompressible
        assert isinstance(big.value, psycopg.OperationalError) and not is_transient(big.value)
        c.rollback()
        with pytest.raises(psycopg.errors.QueryCanceled) as cancelled:
            c.execute("SET LOCAL statement_timeout = '10ms'; SELECT pg_sleep(1)")
        assert is_transient(cancelled.value)  # 57014: an operator or a timeout, not the data
        c.rollback()
    with pytest.raises(psycopg.OperationalError) as gone:
        psycopg.connect("postgresql://postgres@127.0.0.1:9/none", connect_timeout=2)
    assert is_transient(gone.value)  # no SQLSTATE: the connection could not be made


def test_storable_escapes_what_postgresql_cannot_hold():
    value = {"a\ud800": ["x\x00y", "\udfff", "Förste hjälpen"], "n": 3}
    out = storable(value)
    assert out == {"a\\ud800": ["x\\x00y", "\\udfff", "Förste hjälpen"], "n": 3}
    json.dumps(out).encode("utf-8")  # storable as JSON text


def test_an_uncaught_exception_in_a_thread_or_the_main_thread_is_a_masked_json_line():
    code = (
        "import threading\n"
        "from service.platform.observability import configure_logging\n"
        "configure_logging()\n"
        "t = threading.Thread(target=lambda: 1 / 0 if False else (_ for _ in ()).throw("
        "RuntimeError('no employee anna.andersson@kommun.se \\ud800')), name='events-commit')\n"
        "t.start(); t.join()\n"
        "raise ValueError('bad result for bo.berg@kommun.se')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          errors="backslashreplace", timeout=60)
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, done.stderr
    thread_line, main_line = lines
    assert thread_line["level"] == "critical" and "events-commit" in thread_line["msg"]
    assert "RuntimeError" in thread_line["exc"] and "a***@kommun.se" in thread_line["exc"]
    assert main_line["msg"] == "uncaught ValueError; the process stops"
    assert "b***@kommun.se" in main_line["exc"]
    assert "anna.andersson" not in done.stderr and "bo.berg" not in done.stderr


def test_the_one_by_one_fallback_counts_every_event_it_applied(conn, settings, pool, run_worker_for):
    """Seen before: after a batch fell back to one event at a time, only the last event's
    outcome reached the metrics and the logs."""
    from prometheus_client import REGISTRY

    def created() -> float:
        return REGISTRY.get_sample_value("cb_grants_created_total", {"source": "webhook", "tenant": "default"}) or 0.0

    seed_links(conn)  # two competences linked to the course
    for i in range(5):
        add_employee(conn, f"p{i}@kommun.se")
    before = created()
    publisher = Publisher(settings, pool)
    for i in range(5):
        publisher.publish(event(completed_event(f"r-{i}", f"p{i}@kommun.se"), f"w-{i}"))
        if i == 2:
            poison = event(completed_event("r-bad", "p0@kommun.se"), "w-bad")
            poison["result"]["completed_at"] = "not a time"
            publisher.publish(poison)
    publisher.close()
    run_worker_for(settings)
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM dead_letters") == 1, message="the dead letter")
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM grants") == 10, message="ten grants")
    wait_for(lambda: created() - before == 10, timeout=5, message="ten grants counted")

"""The result worker on real RabbitMQ and PostgreSQL: dead letters, retries, order, renewal."""
from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from service.platform import messaging
from service.platform.messaging import Publisher
from service.ingest.schema import parse_event
from tests.conftest import completed_event, course_event, wait_for
from tests.integration.test_pipeline import add_employee, grants, held, result_status, seed_links

pytestmark = pytest.mark.integration


def event(body: dict, webhook_id: str) -> dict:
    """The queued form of a webhook body, as the web process publishes it."""
    e = parse_event(body)
    e["webhook_id"] = webhook_id
    e["received_at"] = e["timestamp"]
    return e


def count(conn, sql, *args):
    return conn.execute(sql, args).fetchone()["n"]


def test_a_poison_event_goes_alone_to_dead_letters_and_the_batch_commits(conn, settings, run_worker):
    seed_links(conn)
    for i in range(9):
        add_employee(conn, f"p{i}@kommun.se")
    publisher = Publisher(settings)
    good = [event(completed_event(f"r-{i}", f"p{i}@kommun.se"), f"w-{i}") for i in range(9)]
    broken = event(completed_event("r-bad", "p0@kommun.se"), "w-bad")
    broken["result"]["completed_at"] = "not a time"
    for body in good[:4] + [broken] + good[4:]:
        publisher.publish(body)
    publisher.publish({"not": "an event"})
    publisher.close()
    run_worker(batch_wait_ms=500)  # one batch holds all eleven
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM dead_letters") == 2, message="two dead letters")
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM grants") == 18, message="18 grants")
    letters = conn.execute("SELECT webhook_id, error, payload FROM dead_letters ORDER BY id").fetchall()
    assert {letter["webhook_id"] for letter in letters} == {"w-bad", None}
    bad = next(letter for letter in letters if letter["webhook_id"] == "w-bad")
    assert "not a time" in bad["error"] and bad["payload"]["result"]["id"] == "r-bad"
    # the poison event's webhook id is not marked processed, so a replay will process it
    assert count(conn, "SELECT count(*) AS n FROM webhook_receipts WHERE webhook_id = 'w-bad'") == 0
    assert count(conn, "SELECT count(*) AS n FROM results") == 9


def test_lost_database_connections_are_retried_not_dead_lettered(conn, settings, run_worker, database_url):
    seed_links(conn)
    add_employee(conn, "anna@kommun.se")
    run_worker()
    publisher = Publisher(settings)
    stop = threading.Event()

    def kill_connections():
        with psycopg.connect(database_url, autocommit=True) as killer:
            while not stop.is_set():
                killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND application_name = ''"
                )
                time.sleep(0.05)

    killer = threading.Thread(target=kill_connections)
    killer.start()
    try:
        for i in range(200):
            publisher.publish(event(completed_event(f"r-{i}", "anna@kommun.se", completed_at=f"2026-11-{1 + i % 28:02d}T12:00:00Z"), f"w-{i}"))
            time.sleep(0.002)
    finally:
        time.sleep(0.5)
        stop.set()
        killer.join()
        publisher.close()
    with psycopg.connect(database_url, autocommit=True) as c:
        wait_for(lambda: c.execute("SELECT count(*) FROM webhook_receipts").fetchone()[0] == 200,
                 timeout=60, message="all 200 events processed")
        assert c.execute("SELECT count(*) FROM results").fetchone()[0] == 200
        assert c.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM grants").fetchone()[0] == 2


@pytest.mark.parametrize("order", ["status_first", "result_first"])
def test_unpublished_course_grants_nothing_whatever_the_order(conn, settings, run_worker, order):
    seed_links(conn)
    add_employee(conn, "anna@kommun.se")
    add_employee(conn, "bo@kommun.se")
    before = event(completed_event("r-before", "bo@kommun.se", completed_at="2026-11-20T12:00:00Z"), "w-before")
    after = event(completed_event("r-after", "anna@kommun.se", completed_at="2026-11-25T12:00:00Z"), "w-after")
    unpublish = event(course_event("unpublished", timestamp="2026-11-22T08:00:00Z"), "w-unpub")
    sequence = [unpublish, before, after] if order == "status_first" else [before, after, unpublish]
    publisher = Publisher(settings)
    run_worker(batch_size=1)  # one event per batch: the arrival order is the processing order
    for body in sequence:
        publisher.publish(body)
    publisher.close()
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM webhook_receipts") == 3)
    assert result_status(conn, "r-after") == "course_not_published"
    assert result_status(conn, "r-before") == "granted"
    assert {g["result_id"] for g in grants(conn)} == {"r-before"}
    assert conn.execute("SELECT status FROM courses WHERE id = 4711").fetchone()["status"] == "unpublished"


def test_republished_course_grants_again_for_later_results(conn, settings, run_worker):
    seed_links(conn)
    add_employee(conn, "anna@kommun.se")
    publisher = Publisher(settings)
    run_worker(batch_size=1)
    for body in [
        event(course_event("unpublished", timestamp="2026-11-10T00:00:00Z"), "w-1"),
        event(course_event("published", timestamp="2026-11-20T00:00:00Z"), "w-2"),
        event(completed_event("r-1", "anna@kommun.se", completed_at="2026-11-15T12:00:00Z"), "w-3"),
        event(completed_event("r-2", "anna@kommun.se", completed_at="2026-11-25T12:00:00Z"), "w-4"),
    ]:
        publisher.publish(body)
    publisher.close()
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM webhook_receipts") == 4)
    assert result_status(conn, "r-1") == "course_not_published"
    assert {g["result_id"] for g in grants(conn)} == {"r-2"}
    assert conn.execute("SELECT status FROM courses WHERE id = 4711").fetchone()["status"] == "published"


def test_a_pass_within_the_renewal_window_starts_the_next_period_only_where_there_is_one(
        conn, settings, run_worker):
    # Changed meaning (renewal_window_days replaced renew_on_completion): a renewal is a new
    # grant from the day after the one held ends; the grant held is never extended.
    renewing, = seed_links(conn, valid_days=(365,), window=60)
    seed_links(conn, course_id=4712, valid_days=(365,))
    fixed = conn.execute("SELECT competence_id FROM links WHERE course_id = 4712").fetchone()["competence_id"]
    add_employee(conn, "anna@kommun.se")
    publisher = Publisher(settings)
    run_worker(batch_size=1)
    for i, (course, when) in enumerate([(4711, "2025-01-10"), (4712, "2025-01-10"), (4711, "2025-12-01"), (4712, "2025-12-01")]):
        publisher.publish(event(completed_event(f"r-{i}", "anna@kommun.se", course_id=course, completed_at=f"{when}T12:00:00Z"), f"w-{i}"))
    publisher.close()
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM webhook_receipts") == 4)
    periods = {}
    for g in conn.execute("SELECT competence_id, valid_from, valid_to, result_id FROM grants ORDER BY valid_from"):
        periods.setdefault(g["competence_id"], []).append((g["valid_from"], g["valid_to"], g["result_id"]))
    assert periods[renewing] == [(date(2025, 1, 10), date(2026, 1, 10), "r-0"),
                                 (date(2026, 1, 11), date(2027, 1, 11), "r-2")]
    assert periods[fixed] == [(date(2025, 1, 10), date(2026, 1, 10), "r-1")]


def test_revoked_grant_is_not_recreated_by_the_same_or_an_older_result(conn, settings, run_worker):
    comp, _ = seed_links(conn)
    emp = add_employee(conn, "anna@kommun.se")
    publisher = Publisher(settings)
    run_worker(batch_size=1)
    publisher.publish(event(completed_event("r-1", "anna@kommun.se", completed_at="2026-11-01T12:00:00Z"), "w-1"))
    wait_for(lambda: len(grants(conn)) == 2)
    g = conn.execute("SELECT * FROM grants WHERE competence_id = %s", (comp,)).fetchone()
    conn.execute("UPDATE grants SET revoked_at = now(), revoked_reason = 'wrong person',"
                 " revoked_by = 'test' WHERE id = %s", (g["id"],))
    # the same result again under a new webhook id, and an older result of another id
    publisher.publish(event(completed_event("r-1", "anna@kommun.se", completed_at="2026-11-01T12:00:00Z"), "w-2"))
    publisher.publish(event(completed_event("r-0", "anna@kommun.se", completed_at="2026-10-01T12:00:00Z"), "w-3"))
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM webhook_receipts") == 3)
    assert [x["competence_id"] for x in grants(conn)].count(comp) == 1  # the revoked one
    assert [x["competence_id"] for x in held(conn)].count(comp) == 0
    # a pass completed after the revocation grants it again
    # (an hour ahead: later than the revocation, within the day ahead that the edge accepts)
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    publisher.publish(event(completed_event("r-9", "anna@kommun.se", completed_at=later), "w-4"))
    publisher.close()
    wait_for(lambda: [x["competence_id"] for x in held(conn)].count(comp) == 1, message="re-granted by a later pass")
    assert [x["result_id"] for x in held(conn) if x["competence_id"] == comp] == ["r-9"]


def test_dead_letter_queue_catches_messages_past_the_delivery_limit(settings, broker_url):
    """The broker side of dead-lettering: quorum queue + DLX + delivery limit are declared."""
    with messaging.connection(settings) as broker:
        topo = messaging.topology(settings)
        messaging.declare(broker, topo)
        channel = broker.channel()
        queue = topo.queue(messaging.EVENTS)(channel)
        dead = topo.queue(messaging.DEAD)(channel)
        producer = broker.Producer(channel)
        producer.publish({"x": 1}, exchange=topo.exchange, routing_key=messaging.EVENTS, serializer="json")
        for _ in range(messaging.DELIVERY_LIMIT + 1):
            msg = wait_for(lambda: queue.get(no_ack=False), timeout=10, message="redelivery")
            msg.reject(requeue=True)
        got = wait_for(lambda: dead.get(no_ack=False), timeout=10, message="dead-lettered message")
        assert got.decode() == {"x": 1}
        got.ack()

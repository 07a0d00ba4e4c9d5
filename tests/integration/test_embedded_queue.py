"""The embedded queue (no BROKER_URL): a table of the database, with RabbitMQ's promises.

A message leaves the queue only in the transaction that applies it, so nothing applied comes
back after a restart, two workers never apply one message twice, and a message that kept
stopping its worker goes to the dead letters after the delivery limit.
"""
from __future__ import annotations

import threading

import pytest
from psycopg.types.json import Jsonb

from service.platform import db, messaging
from service.platform.messaging import DELIVERY_LIMIT, Publisher
from tests.conftest import completed_event, dumps, sign, wait_for
from tests.integration.test_pipeline import add_employee, seed_links
from tests.integration.test_worker import event
from workers.results import ResultWorker

pytestmark = pytest.mark.integration


def count(conn, sql, *args):
    return conn.execute(sql, args).fetchone()["n"]


def depth(conn, settings) -> int:
    return count(conn, "SELECT count(*) AS n FROM queue_messages WHERE queue = %s",
                 messaging.topology(settings).name("events"))


class CountingWorker(ResultWorker):
    """A ResultWorker that counts the events it applied."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.applied = 0

    def after_commit(self, bodies, outcomes):
        self.applied += len(bodies)
        super().after_commit(bodies, outcomes)


def run(worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def stop(worker, thread) -> None:
    worker.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_restarted_worker_gets_nothing_that_was_applied(conn, embedded_settings, pool):
    """Seen before: every restart handed the last run's ~1,000 messages out again."""
    seed_links(conn)
    for i in range(20):
        add_employee(conn, f"p{i}@kommun.se")
    publisher = Publisher(embedded_settings, pool)
    for i in range(300):
        publisher.publish(event(completed_event(f"r-{i}", f"p{i % 20}@kommun.se"), f"w-{i}"))
    assert depth(conn, embedded_settings) == 300

    first = CountingWorker(embedded_settings, pool, batch_size=50)
    thread = run(first)
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM webhook_receipts") == 300,
             message="300 events applied")
    stop(first, thread)
    assert first.applied == 300
    assert depth(conn, embedded_settings) == 0

    again = CountingWorker(embedded_settings, pool, batch_size=50)
    thread = run(again)
    publisher.publish(event(completed_event("r-new", "p1@kommun.se"), "w-new"))
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM webhook_receipts") == 301,
             message="the new event applied")
    stop(again, thread)
    assert again.applied == 1  # only the new one: nothing applied came back
    assert depth(conn, embedded_settings) == 0


def test_two_consumers_holding_the_same_message_apply_it_once(conn, embedded_settings, pool):
    publisher = Publisher(embedded_settings, pool)
    for i in range(5):
        publisher.publish({"n": i})
    got: dict[str, list] = {"a": [], "b": []}
    with messaging.consumer(embedded_settings, "events", got["a"].append, prefetch=10,
                            database_url=pool.conninfo) as a, \
            messaging.consumer(embedded_settings, "events", got["b"].append, prefetch=10,
                               database_url=pool.conninfo) as b:
        assert a.receive(0) and b.receive(0)
        assert [d.body["n"] for d in got["a"]] == [d.body["n"] for d in got["b"]] == list(range(5))
        with pool.connection() as c1, pool.connection() as c2:
            claimed_a = a.claim(c1, got["a"])
            c1.commit()
            claimed_b = b.claim(c2, got["b"])  # waits for nothing: the rows are gone
            c2.commit()
        a.ack(got["a"])
        b.ack(got["b"])
    assert len(claimed_a) == 5 and claimed_b == []
    assert depth(conn, embedded_settings) == 0


def test_a_rolled_back_claim_leaves_the_message_for_the_next_delivery(conn, embedded_settings, pool):
    Publisher(embedded_settings, pool).publish({"n": 1})
    got = []
    with messaging.consumer(embedded_settings, "events", got.append, prefetch=10,
                            database_url=pool.conninfo) as source:
        assert source.receive(0)
        with pool.connection() as c:
            assert len(source.claim(c, got)) == 1
            c.rollback()  # the worker's transaction failed
        assert depth(conn, embedded_settings) == 1
        source.ack([])  # nothing acked: it is still held by this consumer
        assert not source.receive(0)  # a held message is not handed out twice to one consumer
    again = []
    with messaging.consumer(embedded_settings, "events", again.append, prefetch=10,
                            database_url=pool.conninfo) as source:
        assert source.receive(0) and again[0].body == {"n": 1}  # after a restart it comes back


def test_a_message_that_keeps_stopping_its_worker_is_dead_lettered_at_the_limit(conn, embedded_settings, pool):
    name = messaging.topology(embedded_settings).name("events")
    conn.execute(
        "INSERT INTO queue_messages (queue, body, deliveries) VALUES (%s, %s, %s)",
        (name, Jsonb({"type": "course.completed", "webhook_id": "w-crash"}), DELIVERY_LIMIT))
    Publisher(embedded_settings, pool).publish({"n": 2})
    got = []
    with messaging.consumer(embedded_settings, "events", got.append, prefetch=10,
                            database_url=pool.conninfo) as source:
        assert source.receive(0)
    assert [d.body for d in got] == [{"n": 2}]
    letter = conn.execute("SELECT queue, webhook_id, error FROM dead_letters").fetchone()
    assert letter["queue"] == name and letter["webhook_id"] == "w-crash"
    assert f"delivered {DELIVERY_LIMIT} times" in letter["error"]


def test_a_webhook_answered_202_is_a_row_until_the_worker_applies_it(conn, embedded_settings, pool):
    from service.app import create_app

    seed_links(conn)
    add_employee(conn, "anna@kommun.se")
    app = create_app(embedded_settings, pool=pool)
    raw = dumps(completed_event("r-1", "anna@kommun.se"))
    answer = app.test_client().post("/webhooks/infocaption", data=raw, headers=sign(raw, msg_id="w-1"))
    assert answer.status_code == 202
    assert depth(conn, embedded_settings) == 1
    worker = CountingWorker(embedded_settings, pool)
    thread = run(worker)
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM grants") == 2, message="two grants")
    stats = {s.kind: s for s in messaging.queue_stats(embedded_settings, pool.conninfo)}
    assert stats["events"].consumers == 1 and stats["backfill"].consumers == 0
    wait_for(lambda: depth(conn, embedded_settings) == 0, message="the row deleted")
    stop(worker, thread)
    stats = {s.kind: s for s in messaging.queue_stats(embedded_settings, pool.conninfo)}
    assert stats["events"].consumers == 0 and stats["events"].depth == 0


def test_the_embedded_queue_refuses_to_publish_without_the_database(embedded_settings):
    with pytest.raises(ValueError):
        Publisher(embedded_settings)
    with pytest.raises(ValueError):
        messaging.connection(embedded_settings)


def test_publish_fails_loudly_when_the_database_is_gone(embedded_settings, database_url):
    bad = db.make_pool("postgresql://postgres@127.0.0.1:9/none", min_size=0, max_size=1, name="gone")
    try:
        with pytest.raises(messaging.PublishError):
            Publisher(embedded_settings, bad).publish({"n": 1})
    finally:
        bad.close()

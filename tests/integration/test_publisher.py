"""The RabbitMQ publisher on real RabbitMQ: one confirmed message a publish, or packed events
sharing one."""
from __future__ import annotations

import dataclasses
import threading
from urllib.parse import urlsplit

import pytest

from service.platform import messaging
from service.platform.messaging import Publisher, PublishError
from tests.conftest import completed_event, wait_for
from tests.integration.ops.tcp_proxy import TcpProxy
from tests.integration.ops.test_readiness import through
from tests.integration.test_pipeline import add_employee, seed_links
from tests.integration.test_worker import count, event

pytestmark = pytest.mark.integration


def drain(settings, kind: str = messaging.EVENTS) -> list:
    """Every message on a queue, acked, as (body, headers)."""
    out = []
    with messaging.connection(settings) as broker:
        queue = messaging.topology(settings).queue(kind)(broker.channel())
        while (message := queue.get(no_ack=False)) is not None:
            out.append((message.decode(), message.headers))
            message.ack()
    return out


def test_a_publish_returns_once_its_own_message_is_on_the_queue(settings):
    publisher = Publisher(settings)
    try:
        for i in range(5):
            publisher.publish({"n": i}, headers={"webhook-id": f"w-{i}"})
            # Confirmed before returning: the broker hands it out at once, alone, headers kept.
            [(body, headers)] = drain(settings)
            assert (body, headers["webhook-id"]) == ({"n": i}, f"w-{i}")
    finally:
        publisher.close()


def test_concurrent_threads_publish_whole_messages_exactly_once(settings):
    padding = "x" * 20_000  # larger than a frame: interleaved frames would corrupt the bodies
    assert from_16_threads(settings, lambda publisher, i: publisher.publish(
        {"n": i, "pad": padding}, headers={"webhook-id": f"w-{i}"})) == []
    messages = drain(settings)
    assert sorted(body["n"] for body, _ in messages) == list(range(400))
    assert all(body["pad"] == padding and headers["webhook-id"] == f"w-{body['n']}"
               for body, headers in messages)


def test_a_broker_outage_fails_publishes_and_the_next_ones_reconnect(settings):
    proxy = TcpProxy(urlsplit(settings.broker_url).port or 5672)
    publisher = Publisher(dataclasses.replace(settings, broker_url=through(settings.broker_url, proxy.port)))
    try:
        publisher.publish({"n": 0})
        proxy.cut()  # the idle connection is dropped, as by a broker restart
        proxy.restore()
        publisher.publish({"n": 1})  # the broken idle connection is replaced, no error
        proxy.cut()  # down: nothing can be confirmed
        with pytest.raises(PublishError):
            publisher.publish({"n": "during the outage"})
        proxy.restore()
        publisher.publish({"n": 2})
        publisher.publish({"n": 3})
    finally:
        publisher.close()
        proxy.close()
    assert [body for body, _ in drain(settings)] == [{"n": n} for n in range(4)]


def test_an_unroutable_message_is_a_publish_error_and_the_channel_stays_in_step(settings):
    publisher = Publisher(settings)
    try:
        publisher.publish({"n": 0}, kind=messaging.BACKFILL)  # connects and declares
        with messaging.connection(settings) as broker:
            broker.channel().queue_delete(messaging.topology(settings).name(messaging.EVENTS))
        for _ in range(2):
            with pytest.raises(PublishError, match="not routable"):
                publisher.publish({"n": "lost"})
        # The confirms of the returned messages were read with them: this publish waits for
        # its own confirm and lands.
        publisher.publish({"n": 1}, kind=messaging.BACKFILL)
    finally:
        publisher.close()
    assert [body for body, _ in drain(settings, messaging.BACKFILL)] == [{"n": 0}, {"n": 1}]


def test_the_worker_unpacks_and_dead_letters_only_the_poison_events_of_a_packed_message(conn, settings, run_worker):
    # Published raw, so that the pack holds exactly these events.
    seed_links(conn)
    for i in range(4):
        add_employee(conn, f"pk{i}@kommun.se")
    good = [event(completed_event(f"pk-{i}", f"pk{i}@kommun.se"), f"wpk-{i}") for i in range(4)]
    broken = event(completed_event("pk-bad", "pk0@kommun.se"), "wpk-bad")
    broken["result"]["completed_at"] = "not a time"
    topo = messaging.topology(settings)
    with messaging.connection(settings) as broker:
        messaging.declare(broker, topo)
        broker.Producer(broker.channel()).publish(
            good[:2] + [broken, "not an object"] + good[2:], exchange=topo.exchange,
            routing_key=messaging.EVENTS, serializer="json", headers={"x-cb-packed": 6})
    worker = run_worker()
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM dead_letters") == 2, message="two dead letters")
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM grants") == 8, message="8 grants")
    assert count(conn, "SELECT count(*) AS n FROM results") == 4
    errors = {r["error"] for r in conn.execute("SELECT error FROM dead_letters").fetchall()}
    assert any("not a time" in e for e in errors)
    assert "the message is not a JSON object" in errors
    # the packed message was acked once its events committed: after the worker has gone,
    # nothing comes back to the queue
    worker.stop()
    wait_for(lambda: consumers(settings) == 0, message="the worker left the queue")
    assert drain(settings) == []


def consumers(settings) -> int:
    with messaging.connection(settings) as broker:
        queue = messaging.topology(settings).queue(messaging.EVENTS)(broker.channel())
        return queue.queue_declare(passive=True)[2]


@pytest.mark.parametrize("pack_max", [Publisher.PACK_MAX, 3])
def test_concurrent_packed_events_arrive_exactly_once_in_messages_of_at_most_pack_max(settings, monkeypatch, pack_max):
    monkeypatch.setattr(Publisher, "PACK_MAX", pack_max)  # 3: more wait than one message takes
    assert from_16_threads(settings, lambda publisher, i: publisher.publish({"n": i}, pack=True)) == []
    bodies = [body for body, _ in drain(settings)]
    assert sorted(e["n"] for body in bodies for e in messaging.unpack(body)) == list(range(400))
    assert all(len(messaging.unpack(body)) <= pack_max for body in bodies)


def test_a_packed_event_takes_no_headers(settings):
    with pytest.raises(ValueError, match="without headers"):
        Publisher(settings).publish({"n": 0}, headers={"webhook-id": "w"}, pack=True)


def test_packed_events_fail_while_the_broker_is_away_and_go_through_after(settings):
    proxy = TcpProxy(urlsplit(settings.broker_url).port or 5672)
    publisher = Publisher(dataclasses.replace(settings, broker_url=through(settings.broker_url, proxy.port)))
    try:
        publisher.publish({"n": 0}, pack=True)
        proxy.cut()
        with pytest.raises(PublishError):
            publisher.publish({"n": "during the outage"}, pack=True)
        proxy.restore()
        publisher.publish({"n": 1}, pack=True)
    finally:
        publisher.close()
        proxy.close()
    assert [body for body, _ in drain(settings)] == [{"n": 0}, {"n": 1}]


def test_an_unroutable_pack_fails_every_caller_in_it(settings):
    publisher = Publisher(settings)
    publisher.publish({"n": 0}, kind=messaging.BACKFILL)  # connects and declares
    with messaging.connection(settings) as broker:
        broker.channel().queue_delete(messaging.topology(settings).name(messaging.EVENTS))
    errors = []

    def send(n: int) -> None:
        try:
            publisher.publish({"n": n}, pack=True)
        except PublishError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    publisher.close()
    assert len(errors) == 8 and all("not routable" in e for e in errors)


def test_packed_events_of_two_tenants_never_share_a_message(settings):
    """A packed message is one tenant's (docs/tenants.md, "Webhooks"): the worker's
    transaction for it is bound to that tenant."""
    assert from_16_threads(settings, lambda publisher, i: publisher.publish(
        {"n": i, "tenant": 1 + i % 2}, pack=True, pack_with=1 + i % 2)) == []
    bodies = [messaging.unpack(body) for body, _ in drain(settings)]
    assert sorted(e["n"] for events in bodies for e in events) == list(range(400))
    assert all(len({e["tenant"] for e in events}) == 1 for events in bodies)
    assert any(len(events) > 1 for events in bodies)  # packing did happen


def from_16_threads(settings, publish) -> list:
    """Events 0 … 399 published by 16 threads at once, 25 each, through one publisher;
    returns the errors."""
    publisher = Publisher(settings)
    errors = []

    def send(start: int) -> None:
        for i in range(start, start + 25):
            try:
                publish(publisher, i)
            except Exception as exc:  # noqa: BLE001 - collected and asserted by the caller
                errors.append(exc)

    threads = [threading.Thread(target=send, args=(k * 25,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    publisher.close()
    return errors

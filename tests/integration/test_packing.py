"""Packed messages: webhook events that share one durable message, on real RabbitMQ."""
from __future__ import annotations

import threading

import pytest

from service.platform import messaging
from service.platform.messaging import PACKED_HEADER, Publisher, _ConfirmLink, _Pending
from tests.conftest import completed_event, wait_for
from tests.integration.test_pipeline import add_employee, seed_links
from tests.integration.test_worker import count, event

pytestmark = pytest.mark.integration


def drain(settings) -> list:
    """Every message on the events queue, acked, as (body, headers)."""
    out = []
    with messaging.connection(settings) as broker:
        queue = messaging.topology(settings).queue(messaging.EVENTS)(broker.channel())
        while (message := queue.get(no_ack=False)) is not None:
            out.append((message.decode(), message.headers))
            message.ack()
    return out


def test_packable_events_share_messages_of_at_most_pack_max_and_each_caller_is_confirmed(settings):
    link = _ConfirmLink(settings, messaging.topology(settings))
    try:
        packable = [_Pending({"n": i}, messaging.EVENTS, {"webhook-id": f"w-{i}"}, True) for i in range(5)]
        plain = _Pending({"n": "plain"}, messaging.EVENTS, {"webhook-id": "w-plain"})
        link.send(packable[:2] + [plain] + packable[2:], timeout=10, pack_max=3)
    finally:
        link.close()
    assert all(p.settled and p.error is None for p in packable + [plain])
    messages = drain(settings)
    assert [(body, headers.get(PACKED_HEADER)) for body, headers in messages] == [
        ({"n": "plain"}, None),
        ([{"n": 0}, {"n": 1}, {"n": 2}], 3),
        ([{"n": 3}, {"n": 4}], 2),
    ]
    assert messages[0][1]["webhook-id"] == "w-plain"  # an unpacked message keeps its headers


@pytest.mark.parametrize("group_max", [Publisher.GROUP_MAX, 3])
def test_concurrent_webhook_publishes_arrive_exactly_once(settings, monkeypatch, group_max):
    monkeypatch.setattr(Publisher, "GROUP_MAX", group_max)  # 3: leaders lead several groups
    publisher = Publisher(settings)
    errors = []

    def send(start: int) -> None:
        for i in range(start, start + 25):
            try:
                publisher.publish({"n": i}, pack=True)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=send, args=(k * 25,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    publisher.close()
    assert errors == []
    messages = drain(settings)
    events = [e["n"] for body, _ in messages for e in messaging.unpack(body)]
    assert sorted(events) == list(range(400))
    assert all(len(messaging.unpack(body)) <= Publisher.PACK_MAX for body, _ in messages)


def test_an_unroutable_pack_fails_every_caller_in_it(settings):
    link = _ConfirmLink(settings, messaging.topology(settings))
    try:
        link.channel.queue_delete(messaging.topology(settings).queue(messaging.EVENTS).name)
        pack = [_Pending({"n": i}, messaging.EVENTS, {}, True) for i in range(3)]
        link.send(pack, timeout=10, pack_max=64)
    finally:
        link.close()
    assert all(p.error and "not routable" in p.error for p in pack)


def test_the_worker_unpacks_and_dead_letters_only_the_poison_events_of_a_pack(conn, settings, run_worker):
    seed_links(conn)
    for i in range(4):
        add_employee(conn, f"pk{i}@kommun.se")
    good = [event(completed_event(f"pk-{i}", f"pk{i}@kommun.se"), f"wpk-{i}") for i in range(4)]
    broken = event(completed_event("pk-bad", "pk0@kommun.se"), "wpk-bad")
    broken["result"]["completed_at"] = "not a time"
    link = _ConfirmLink(settings, messaging.topology(settings))
    try:
        pack = [_Pending(b, messaging.EVENTS, {}, True) for b in good[:2] + [broken, "not an object"] + good[2:]]
        link.send(pack, timeout=10, pack_max=64)
    finally:
        link.close()
    worker = run_worker()
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM dead_letters") == 2, message="two dead letters")
    wait_for(lambda: count(conn, "SELECT count(*) AS n FROM grants") == 8, message="8 grants")
    assert count(conn, "SELECT count(*) AS n FROM results") == 4
    errors = {r["error"] for r in conn.execute("SELECT error FROM dead_letters").fetchall()}
    assert any("not a time" in e for e in errors)
    assert "the message is not a JSON object" in errors
    # the pack was acked once its events committed: after the worker has gone, nothing
    # comes back to the queue
    worker.stop()
    wait_for(lambda: consumers(settings) == 0, message="the worker left the queue")
    assert drain(settings) == []


def consumers(settings) -> int:
    with messaging.connection(settings) as broker:
        queue = messaging.topology(settings).queue(messaging.EVENTS)(broker.channel())
        return queue.queue_declare(passive=True)[2]

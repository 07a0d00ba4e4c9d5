"""RabbitMQ helpers of the benchmark: the service's topology under a prefix, fill, depth, delete."""
from __future__ import annotations

import json
import socket
import time

import amqp

from bench.servers import BROKER_URL, HOST, SECRET
from service.platform import config as config_mod
from service.platform import messaging


def settings(prefix: str) -> config_mod.Settings:
    return config_mod.load({
        "BROKER_URL": BROKER_URL, "QUEUE_PREFIX": prefix, "DATABASE_URL": "postgresql://unused",
        "INFOCAPTION_BASE_URL": "http://127.0.0.1:9", "INFOCAPTION_WEBHOOK_SECRETS": SECRET,
        "INFOCAPTION_CLIENT_ID": "bench", "INFOCAPTION_CLIENT_SECRET": "bench",
    })


def declare(prefix: str) -> None:
    """Declare the service's exchanges and queues for `prefix`, exactly as it does."""
    s = settings(prefix)
    with messaging.connection(s) as conn:
        messaging.declare(conn, messaging.topology(s))


def _connection() -> amqp.Connection:
    conn = amqp.Connection(f"{HOST}:5672", userid="guest", password="guest", virtual_host="/",
                           heartbeat=0, connect_timeout=5)
    conn.connect()
    return conn


def depth(prefix: str, kind: str = messaging.EVENTS) -> int:
    """Messages ready in one queue of `prefix`."""
    conn = _connection()
    try:
        ch = conn.channel()
        _name, count, _consumers = ch.queue_declare(f"{prefix}.{kind}", passive=True)
        return count
    finally:
        conn.close()


def fill(prefix: str, events: list[dict], chunk: int = 2000) -> float:
    """Publish events to the events queue as the webhook endpoint does; return the seconds taken.

    Published in confirm mode, in chunks, so that every one is on the queue when this returns.
    """
    declare(prefix)
    started = time.monotonic()
    conn = _connection()
    try:
        ch = conn.channel()
        ch.confirm_select()
        acked = {"n": 0, "nacked": 0}
        seq = {"n": 0}

        def on_ack(tag, multiple):
            acked["n"] = max(acked["n"], tag)

        def on_nack(tag, multiple):
            acked["nacked"] += 1

        ch.events["basic_ack"].add(on_ack)
        ch.events["basic_nack"].add(on_nack)
        for start in range(0, len(events), chunk):
            for event in events[start:start + chunk]:
                ch.basic_publish(
                    amqp.Message(json.dumps(event, separators=(",", ":")),
                                 content_type="application/json", content_encoding="utf-8",
                                 delivery_mode=2, application_headers={"webhook-id": event["webhook_id"]}),
                    exchange=prefix, routing_key=messaging.EVENTS, mandatory=True)
                seq["n"] += 1
            while acked["n"] < seq["n"]:
                try:
                    conn.drain_events(timeout=10)
                except socket.timeout:
                    raise RuntimeError("RabbitMQ did not confirm the pre-fill in time") from None
        if acked["nacked"]:
            raise RuntimeError(f"RabbitMQ refused {acked['nacked']} pre-fill messages")
    finally:
        conn.close()
    return time.monotonic() - started


def take_events(prefix: str, kind: str = messaging.EVENTS) -> tuple[int, int]:
    """Consume every ready message of one queue; return (messages, events they carry)."""
    conn = _connection()
    messages = events = 0
    try:
        ch = conn.channel()
        ch.basic_qos(0, 2000, False)
        while (message := ch.basic_get(f"{prefix}.{kind}", no_ack=True)) is not None:
            messages += 1
            events += len(messaging.unpack(json.loads(message.body)))
        return messages, events
    finally:
        conn.close()


def purge(prefix: str, kind: str = messaging.EVENTS) -> None:
    conn = _connection()
    try:
        conn.channel().queue_purge(f"{prefix}.{kind}")
    finally:
        conn.close()


def delete_prefix(prefix: str) -> None:
    """Delete every queue and exchange of `prefix` (those that exist)."""
    conn = _connection()
    try:
        for kind in (messaging.EVENTS, messaging.BACKFILL, messaging.DEAD):
            ch = conn.channel()
            try:
                ch.queue_delete(f"{prefix}.{kind}")
            except amqp.exceptions.AMQPError:
                pass
            finally:
                try:
                    ch.close()
                except Exception:  # noqa: BLE001 - closed by the broker already
                    pass
        for exchange in (prefix, f"{prefix}.dlx"):
            ch = conn.channel()
            try:
                ch.exchange_delete(exchange)
            except amqp.exceptions.AMQPError:
                pass
            finally:
                try:
                    ch.close()
                except Exception:  # noqa: BLE001
                    pass
    finally:
        conn.close()

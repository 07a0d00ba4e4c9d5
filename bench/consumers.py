"""Baselines of the worker: a minimal kombu consumer running the service's own grant SQL.

    python -m bench.consumers ceiling   # 500 events per transaction, one multiple-ack after commit
    python -m bench.consumers naive     # one transaction (and one ack) per event

Same queue, same messages, same statements as workers/results.py (claim_webhooks,
upsert_courses_seen, upsert_results, which also grants, from service/grants/results.sql), same
database state afterwards; none of the worker's framework: no dataclasses, no metrics, no logs,
no per-event savepoint fallback, no dead letters. It reads its settings like the worker.
"""
from __future__ import annotations

import signal
import socket
import sys

import psycopg
from kombu import Consumer

from service.platform import config as config_mod
from service.platform import db, messaging, tenancy
from service.people.email import normalize_email

BATCH = 500


def apply(conn: psycopg.Connection, events: list[dict], tz: str) -> None:
    """Run the grant SQL for a batch of course.completed events."""
    first: dict[str, dict] = {}
    for e in events:
        first.setdefault(e["webhook_id"], e)
    ids = sorted(first)
    claimed = conn.execute(db.q("claim_webhooks"),
                           {"webhook_ids": ids, "types": [first[i]["type"] for i in ids]}).fetchall()
    fresh = sorted((first[r[0]] for r in claimed), key=lambda e: e["result"]["id"])
    if not fresh:
        return
    courses = [e["course"] for e in fresh]
    results = [e["result"] for e in fresh]
    conn.execute(db.q("upsert_courses_seen"), {
        "ids": [c["id"] for c in courses], "names": [c["name"] for c in courses],
        "guide_types": [c["guide_type"] for c in courses]})
    conn.execute(db.q("upsert_results"), {
        "ids": [r["id"] for r in results],
        "course_ids": [c["id"] for c in courses],
        "emails": [r["email"] for r in results],
        "emails_normalized": [normalize_email(r["email"]) for r in results],
        "first_names": [r["first_name"] for r in results],
        "last_names": [r["last_name"] for r in results],
        "passed": [r["passed"] for r in results],
        "scores": [r["score"] for r in results],
        "completed_at": [r["completed_at"] for r in results],
        "changed_at": [e["timestamp"] for e in fresh],
        "webhook_ids": [e["webhook_id"] for e in fresh],
        "sources": ["webhook"] * len(fresh),
        "source": "webhook", "tz": tz,
    }).fetchall()


def main(mode: str) -> None:
    settings = config_mod.load()
    batch = BATCH if mode == "ceiling" else 1
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    # The service's session settings (service/db: SESSION_OPTIONS), so that the same SQL is
    # planned the same way.
    conn = psycopg.connect(settings.database_url, options=db.connect_kwargs(settings.database_url)["options"])
    # As the worker runs: the application's role, the tenant bound, row-level security applied
    # (docs/tenants.md); the owner would plan the same SQL differently.
    db.use_app_role(conn)
    db.bind_tenant(conn, tenancy.DEFAULT_ID)
    topo = messaging.topology(settings)
    buffer: list = []
    with messaging.connection(settings) as broker:
        broker.ensure_connection(max_retries=3)
        channel = broker.channel()
        consumer = Consumer(channel, queues=[topo.queue(messaging.EVENTS)],
                            callbacks=[lambda body, message: buffer.append((body, message))],
                            accept=["json"], prefetch_count=BATCH * 2)
        with consumer:
            while not stopping:
                if len(buffer) < batch:
                    try:
                        broker.drain_events(timeout=0.005 if buffer else 1.0)
                        continue
                    except socket.timeout:
                        if not buffer:
                            continue
                while buffer:
                    taken, buffer[:] = buffer[:batch], buffer[batch:]
                    with conn.transaction():
                        apply(conn, [body for body, _ in taken], settings.time_zone)
                    taken[-1][1].ack(multiple=True)  # after the commit
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1])

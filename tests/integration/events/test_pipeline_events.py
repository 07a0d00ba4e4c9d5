"""A signed InfoCaption webhook becomes a grant, and the grant an event at the subscriber:
ingest on real RabbitMQ, the result worker and the delivery loop on real PostgreSQL."""
from __future__ import annotations

import pytest

from service.events.delivery import DeliveryLoop
from tests.conftest import completed_event, dumps, sign, wait_for
from tests.integration.events.helpers import seed, subscribe

pytestmark = pytest.mark.integration


def test_a_webhook_grant_reaches_the_subscriber(conn, client, run_worker, event_settings, receiver, database_url):
    ids = seed(conn)
    subscribe(conn, event_settings, receiver, ["grant.created"])
    run_worker()
    loop = DeliveryLoop(event_settings, database_url, threads=1)
    loop.start()
    try:
        raw = dumps(completed_event("r-98765", "Anna.Andersson@kommun.se ", completed_at="2026-11-29T12:00:00+01:00"))
        assert client.post("/webhooks/infocaption", data=raw, headers=sign(raw)).status_code == 202
        wait_for(lambda: receiver.requests, timeout=60, message="the event at the subscriber")
    finally:
        loop.stop()
    [request] = receiver.requests
    assert request["verified"]
    g = request["json"]["data"]["grant"]
    assert (g["employee_id"], g["competence_id"], g["result_id"], g["source"], g["valid_from"]) == \
        (ids["employee"], ids["competence"], "r-98765", "webhook", "2026-11-29")


def test_a_pass_after_expiry_is_a_new_period_and_arrives_as_renewed(conn, client, run_worker, event_settings,
                                                                    receiver, database_url):
    """Grant periods (rule 3): the real grant step inserts the next period; the trigger tells it."""
    ids = seed(conn)
    subscribe(conn, event_settings, receiver, ["grant.created", "grant.renewed"])
    run_worker()
    for rid, completed in (("r-old", "2023-01-10T12:00:00+01:00"), ("r-new", "2026-11-29T12:00:00+01:00")):
        raw = dumps(completed_event(rid, "anna.andersson@kommun.se", completed_at=completed))
        assert client.post("/webhooks/infocaption", data=raw, headers=sign(raw)).status_code == 202
        wait_for(lambda: conn.execute("SELECT 1 FROM grants WHERE result_id = %s", (rid,)).fetchone(),
                 timeout=60, message=f"the grant of {rid}")
    rows = conn.execute("SELECT type, body FROM outgoing_events ORDER BY id").fetchall()
    got = [(r["type"], r["body"]["data"]["grant"]["result_id"], r["body"]["data"]["grant"]["status"]) for r in rows]
    assert got == [("grant.created", "r-old", "expired"), ("grant.renewed", "r-new", "active")]
    assert ids["employee"] == rows[1]["body"]["data"]["grant"]["employee_id"]

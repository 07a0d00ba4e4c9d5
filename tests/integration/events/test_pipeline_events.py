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

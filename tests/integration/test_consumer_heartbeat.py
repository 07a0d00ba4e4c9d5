"""A consumer busy with long work (a backfill) keeps its broker connection alive by
heartbeating, however many heartbeat intervals the work takes (docs/processes.md, "The
backfill")."""
from __future__ import annotations

import time

from kombu import Connection

from service.platform import messaging


def test_a_consumer_that_heartbeats_through_work_of_several_intervals_stays_connected(settings, monkeypatch):
    # A heartbeat of 1 s (the service's is 30 s): py-amqp gives up after two intervals without
    # a frame read, so four seconds of work between reads is what stopped every backfill.
    monkeypatch.setattr(messaging, "connection", lambda s: Connection(
        s.broker_url, transport_options={"confirm_publish": True}, heartbeat=1, connect_timeout=5))
    with messaging.consumer(settings, messaging.BACKFILL, lambda _d: None, prefetch=1,
                            database_url=settings.database_url) as source:
        end = time.monotonic() + 4
        while time.monotonic() < end:  # the work: nothing else reads the connection meanwhile
            time.sleep(0.2)
            source.heartbeat()
        assert source.receive(0.1) is False  # still connected: nothing queued, nothing raised

"""The same faults on the embedded defaults (no DATABASE_URL, no BROKER_URL): the PostgreSQL
under the data directory and the queue as a table in it, as a single-machine install runs
them in production. Rule 9 holds as on RabbitMQ, and nothing applied stays on, or comes back
to, the queue: its depth is 0 after the drain and after a restart of everything."""
from __future__ import annotations

import time

from tests.chaos.conftest import count, record
from tests.chaos.test_faults import (PER_TENANT, generated, kill_worker_ten_times, make_sim, run_traffic,
                                    seed, settle_and_count, two_tenants_worker_killed)

DEPTH = "SELECT count(*) FROM queue_messages"


def _start(s) -> None:
    s.start("web")
    s.start("worker", "--queue", "events")


def test_embedded_worker_sigkilled_ten_times_during_20000_events(embedded):
    make, url = embedded
    name = "embedded: worker SIGKILL ×10 during 20,000 events"
    figures = kill_worker_ten_times(name, make(WEB_CONCURRENCY=2, BATCH_SIZE=200), url, 21)
    depth = count(url, DEPTH)
    record(name, **dict(figures, notes=f"{figures['notes']}; queue depth after the drain {depth}"))
    assert depth == 0, figures


def test_embedded_two_tenants_at_once_while_the_worker_is_sigkilled_ten_times(embedded):
    make, url = embedded
    name = f"embedded: two tenants, worker SIGKILL ×10 during 2 × {PER_TENANT:,} events"
    two_tenants_worker_killed(name, make(WEB_CONCURRENCY=2, BATCH_SIZE=200), url, 23)
    assert count(url, DEPTH) == 0


def test_embedded_web_sigkilled_during_20000_events_then_everything_restarted(embedded):
    make, url = embedded
    s = make(WEB_CONCURRENCY=2, BATCH_SIZE=200)
    sim = make_sim(s.url, seed=22)
    s.env["INFOCAPTION_BASE_URL"] = sim.url
    links = seed(url, sim)
    _start(s)
    s.start("scheduler")
    kills = []

    def during(elapsed):
        if len(kills) < 3 and elapsed >= 8 * (len(kills) + 1):
            s.kill("web")  # gunicorn and its workers, mid-request: the sender retries
            kills.append(round(elapsed, 1))
            s.start("web")

    try:
        run_traffic(sim, 20_000, rate=400, during=during)
        figures = settle_and_count("embedded: web SIGKILL ×3 during 20,000 events, then a restart of everything",
                                   sim, s, url, links, web_kills=len(kills))
        after_drain = count(url, DEPTH)
        receipts = count(url, "SELECT count(*) FROM webhook_receipts")
        latest = count(url, "SELECT coalesce(max(extract(epoch FROM updated_at)), 0)::bigint FROM results")
        grants = count(url, "SELECT count(*) FROM grants")

        s.stop()  # everything, then everything again: nothing applied may come back
        s.procs.clear()
        _start(s)
        s.start("scheduler")
        time.sleep(10)  # a worker handed anything would have applied it by now
        after_restart = count(url, DEPTH)
        record("embedded: web SIGKILL ×3 during 20,000 events, then a restart of everything", **dict(
            figures, notes=f"web kills {len(kills)}; queue depth after the drain {after_drain}, "
                           f"after the restart {after_restart}"))
        assert after_drain == 0 and after_restart == 0
        assert count(url, "SELECT count(*) FROM webhook_receipts") == receipts == generated(sim)
        assert count(url, "SELECT count(*) FROM grants") == grants
        assert count(url, "SELECT coalesce(max(extract(epoch FROM updated_at)), 0)::bigint FROM results") == latest
    finally:
        sim.stop()
    assert len(kills) == 3

"""Known traffic through the real ingest, RabbitMQ and worker shows as exact values on /metrics."""
from __future__ import annotations

import urllib.request
from datetime import datetime, timezone

import pytest

from service.platform.messaging import Publisher
from service.platform.metrics import serve_metrics
from tests.conftest import completed_event, wait_for
from tests.integration.ops.metrics_util import (
    add_employee, delta, parse, post, scrape, seed_course_link, set_backfill, value,
)

pytestmark = pytest.mark.integration


def _decided(conn, n: int) -> bool:
    row = conn.execute(
        "SELECT count(*) AS n, count(*) FILTER (WHERE status = 'received') AS waiting FROM results"
    ).fetchone()
    return row["n"] == n and row["waiting"] == 0


def test_known_traffic_gives_exact_counters_and_state_gauges(conn, client, run_worker, settings):
    link, _ = seed_course_link(conn)
    add_employee(conn, "anna.andersson@kommun.se")
    add_employee(conn, "bo.berg@kommun.se")
    before = scrape(client)
    run_worker()

    first = completed_event("r-1", "Anna.Andersson@kommun.se")
    assert post(client, first, msg_id="m-1").status_code == 202
    assert post(client, first, msg_id="m-1").status_code == 202  # redelivered: processed once
    assert post(client, completed_event("r-2", "bo.berg@kommun.se"), msg_id="m-2").status_code == 202
    assert post(client, completed_event("r-3", "nobody@kommun.se"), msg_id="m-3").status_code == 202
    assert post(client, completed_event("r-4", "anna.andersson@kommun.se", passed=False),
                msg_id="m-4").status_code == 202
    unknown = {"type": "course.rated", "timestamp": datetime.now(timezone.utc).isoformat(), "data": {}}
    assert post(client, unknown).status_code == 202
    assert post(client, completed_event("r-5", "x@kommun.se"), secret="whsec_d3Jvbmc=").status_code == 401

    def settled():
        # The worker counts after its commit: wait for the counts, not only for the database.
        now = scrape(client)
        counted = sum(delta(now, before, "cb_events_processed_total", outcome=o)
                      for o in ("granted", "unmatched", "not_passed", "duplicate"))
        return _decided(conn, 4) and counted >= 5 and \
            delta(now, before, "cb_grants_created_total", tenant="default", source="webhook") >= 2 and now

    after = wait_for(settled, message="five events counted")

    # Counters of the ingest (web) and of the worker: exactly the traffic above.
    assert delta(after, before, "cb_webhooks_total", tenant="default", outcome="accepted", type="course.completed") == 5
    assert delta(after, before, "cb_webhooks_total", tenant="default", outcome="ignored", type="unknown") == 1
    assert delta(after, before, "cb_webhooks_total", tenant="default", outcome="rejected_401", type="-") == 1
    assert delta(after, before, "cb_events_processed_total", outcome="granted") == 2
    assert delta(after, before, "cb_events_processed_total", outcome="unmatched") == 1
    assert delta(after, before, "cb_events_processed_total", outcome="not_passed") == 1
    assert delta(after, before, "cb_grants_created_total", tenant="default", source="webhook") == 2
    assert delta(after, before, "cb_processing_lag_seconds_count", tenant="default") == 5
    assert delta(after, before, "cb_dead_letters_total", queue="events") == 0
    lag_le_5m = delta(after, before, "cb_processing_lag_seconds_bucket", tenant="default", le="300.0")
    assert lag_le_5m == 5  # every event committed within five minutes of its webhook

    # State gauges, read from PostgreSQL and RabbitMQ at scrape time.
    events, backfill, dead = (f"{settings.queue_prefix}.{k}" for k in ("events", "backfill", "dead"))
    assert value(after, "cb_dependency_up", dependency="database") == 1
    assert value(after, "cb_dependency_up", dependency="broker") == 1
    assert {s: value(after, "cb_results", tenant="default", status=s) for s in
            ("granted", "unmatched", "failed", "received", "no_link", "course_not_published")} == {
        "granted": 2, "unmatched": 1, "failed": 1, "received": 0, "no_link": 0, "course_not_published": 0}
    assert value(after, "cb_grants", tenant="default", source="webhook") == 2
    assert value(after, "cb_grants", tenant="default", source="backfill") == 0
    assert value(after, "cb_unmatched_results", tenant="default") == 1
    assert value(after, "cb_unmatched_emails", tenant="default") == 1
    assert value(after, "cb_dead_letters_pending", tenant="default", queue=events) == 0
    assert value(after, "cb_queue_messages", queue=events) == 0
    assert value(after, "cb_queue_consumers", queue=events) == 1  # the one worker
    assert value(after, "cb_queue_consumers", queue=backfill) == 0
    assert value(after, "cb_queue_messages", queue=dead) == 0
    assert value(after, "cb_backfill_links", tenant="default", state="pending") == 1
    assert value(after, "cb_backfill_links", tenant="default", state="running") == 0
    ratios = {dict(lbl)["link_id"]: v for (name, lbl), v in after.items() if name == "cb_backfill_progress_ratio"}
    assert ratios == {str(link): 0.0}  # the link's backfill has not counted anything yet


def test_queue_depth_and_consumers_follow_the_broker(conn, client, run_worker, settings):
    seed_course_link(conn)
    events = f"{settings.queue_prefix}.events"
    for i in range(3):
        assert post(client, completed_event(f"r-{i}", f"p{i}@kommun.se")).status_code == 202

    queued = wait_for(lambda: (s := scrape(client)) and value(s, "cb_queue_messages", queue=events) == 3 and s,
                      message="three messages queued")
    assert value(queued, "cb_queue_consumers", queue=events) == 0
    assert value(queued, "cb_results", tenant="default", status="unmatched") == 0

    run_worker()
    drained = wait_for(lambda: (s := scrape(client)) and value(s, "cb_results", tenant="default", status="unmatched") == 3 and s,
                       message="three results stored")
    assert value(drained, "cb_queue_messages", queue=events) == 0
    assert value(drained, "cb_queue_consumers", queue=events) == 1


def test_dead_letters_and_backfill_progress(conn, client, run_worker, settings):
    link, comp = seed_course_link(conn)
    set_backfill(conn, link, "running", total=10, processed=4, granted=1, already_held=1,
                 not_passed=1, unmatched=1)
    done_link, _ = seed_course_link(conn, course_id=4712)
    set_backfill(conn, done_link, "done", total=2, processed=2, granted=2)
    before = scrape(client)
    run_worker()
    poison = {"type": "course.completed", "webhook_id": "m-poison", "timestamp": "not a time",
              "course": {"id": 4711, "name": "HLR vuxen", "guide_type": 14},
              "result": {"id": "r-p", "email": "p@kommun.se", "passed": True, "completed_at": "never"}}
    publisher = Publisher(settings)
    try:
        publisher.publish(poison)
    finally:
        publisher.close()
    events = f"{settings.queue_prefix}.events"
    wait_for(lambda: value(scrape(client), "cb_dead_letters_pending", tenant="default", queue=events) == 1,
             message="the poison event dead-lettered")
    # A scrape renders the counters before it reads the database: read again for both to agree.
    after = scrape(client)
    assert value(after, "cb_dead_letters_pending", tenant="default", queue=events) == 1
    assert delta(after, before, "cb_dead_letters_total", queue="events") == 1
    assert value(after, "cb_results", tenant="default", status="received") == 0

    labels = dict(link_id=str(link), course_id="4711", competence_id=str(comp))
    assert {k: value(after, "cb_backfill_results", tenant="default", count=k, **labels)
            for k in ("total", "processed", "granted", "already_held", "not_passed", "unmatched",
                      "errors")} == {
        "total": 10, "processed": 4, "granted": 1, "already_held": 1, "not_passed": 1,
        "unmatched": 1, "errors": 0}
    assert value(after, "cb_backfill_progress_ratio", tenant="default", **labels) == pytest.approx(0.4)
    assert value(after, "cb_backfill_links", tenant="default", state="running") == 1
    assert value(after, "cb_backfill_links", tenant="default", state="done") == 1
    # A finished backfill leaves the per-link series (bounded cardinality).
    assert not [lbl for (name, lbl) in after if name == "cb_backfill_results"
                and dict(lbl)["link_id"] == str(done_link)]


def test_worker_counters_on_the_worker_metrics_port(conn, client, run_worker):
    seed_course_link(conn)
    add_employee(conn, "anna.andersson@kommun.se")
    server = serve_metrics(0, addr="127.0.0.1")  # what `competence-bridge worker` does on METRICS_PORT
    assert server is not None
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        def read():
            with urllib.request.urlopen(url, timeout=5) as r:
                return parse(r.read().decode())

        before = read()
        run_worker()
        assert post(client, completed_event("r-w", "anna.andersson@kommun.se")).status_code == 202
        after = wait_for(lambda: (s := read()) and delta(s, before, "cb_grants_created_total", tenant="default", source="webhook") == 1 and s,
                         message="the grant counted on the worker port")
        assert delta(after, before, "cb_events_processed_total", outcome="granted") == 1
        assert delta(after, before, "cb_processing_lag_seconds_count", tenant="default") == 1
    finally:
        server.shutdown()
        server.server_close()

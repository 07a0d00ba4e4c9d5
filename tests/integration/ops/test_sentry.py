"""Errors of the worker, the scheduler and the web reach Sentry tagged, and with no personal data.

Sentry's HTTP transport is replaced by one that keeps the envelopes; everything else (the
worker on real RabbitMQ and PostgreSQL, the scheduler's job loop, Flask) runs for real.
"""
from __future__ import annotations

import json

import pytest

from service.platform.messaging import Publisher
from tests.conftest import SECRET, wait_for
from tests.unit.ops import sentry_util
from tests.unit.ops.sentry_util import ANY_EMAIL

pytestmark = pytest.mark.integration

EMAIL = "Anna.Andersson@kommun.se"
TOKEN = "cbt_s3cr3tTokenValue"
PRIVATE = ("anna.andersson", "andersson", "Anna ", TOKEN, "s3cr3t", "whsec_", SECRET)


@pytest.fixture
def sentry():
    started = []

    def start(process: str) -> sentry_util.CapturingTransport:
        started.append(sentry_util.start(process))
        return started[-1]

    yield start
    if started:
        sentry_util.stop()


def assert_no_personal_data(raw: str) -> None:
    assert not ANY_EMAIL.search(raw), ANY_EMAIL.search(raw).group(0)
    lowered = raw.lower()
    for word in PRIVATE:
        assert word.lower() not in lowered, word


def test_dead_lettered_event_reaches_sentry_tagged_and_without_personal_data(conn, settings, run_worker, sentry):
    transport = sentry("worker")
    run_worker()
    poison = {
        "type": "course.completed",
        "webhook_id": f"msg-for-{EMAIL}",
        "timestamp": "2026-11-30T10:00:00+00:00",
        "course": {"id": 4711, "name": "HLR vuxen", "guide_type": 14},
        "result": {
            "id": "r-poison", "email": EMAIL, "first_name": "Anna", "last_name": "Andersson",
            "passed": True, "score": 92,
            # Not a time: the worker fails on it and quotes it in the error it keeps and reports.
            "completed_at": f"{EMAIL} Bearer {TOKEN} {SECRET}",
        },
    }
    publisher = Publisher(settings)
    try:
        publisher.publish(poison)
    finally:
        publisher.close()

    kept = wait_for(lambda: conn.execute("SELECT error FROM dead_letters").fetchall(),
                    message="the poison event dead-lettered")
    assert EMAIL in kept[0]["error"]  # the database keeps it for ops; Sentry must not get it
    events = wait_for(lambda: [e for e in transport.events()
                               if str(e.get("message", "")).startswith("event dead-lettered")],
                      message="the dead letter reported to Sentry")
    assert len(events) == 1
    event = events[0]
    assert event["level"] == "error"
    assert {k: event["tags"][k] for k in ("process", "queue", "event_type")} == {
        "process": "worker", "queue": "events", "event_type": "course.completed"}
    assert event["fingerprint"] == ["dead-letter", "events", "course.completed", "ValueError"]
    assert event["message"].startswith("event dead-lettered: ValueError: Invalid isoformat string")
    assert "[email at kommun.se]" in event["message"]  # still telling ops which domain
    assert_no_personal_data(transport.serialized())


def test_failing_scheduled_job_reaches_sentry_without_personal_data(settings, database_url, sentry):
    from workers.jobs import Job
    from workers.scheduler import Scheduler

    def reconcile():
        raise RuntimeError(f"InfoCaption refused {EMAIL} with Bearer {TOKEN}")

    transport = sentry("scheduler")
    scheduler = Scheduler(settings, database_url, jobs=[Job("reconcile", 60, reconcile)])
    try:
        scheduler.run_due()  # the job fails; the scheduler logs it and goes on
    finally:
        scheduler.pool.close()
        scheduler.publisher.close()
    events = wait_for(transport.events, message="the failed job reported")
    assert len(events) == 1
    event = events[0]
    assert event["tags"]["process"] == "scheduler"
    assert event["logentry"]["message"] == "scheduled job %s failed"
    (exc,) = event["exception"]["values"]
    assert exc["type"] == "RuntimeError" and "[email at kommun.se]" in exc["value"]
    assert_no_personal_data(transport.serialized())


def test_unhandled_web_error_reaches_sentry_without_body_or_credentials(app, sentry):
    from flask import request

    def boom():
        raise RuntimeError(f"cannot grant {request.get_json()['user']['email']}")

    app.add_url_rule("/test-boom", "test_boom", boom, methods=["POST"])
    transport = sentry("web")
    response = app.test_client().post(
        "/test-boom",
        data=json.dumps({"user": {"email": EMAIL, "firstName": "Anna", "lastName": "Andersson"}}),
        headers={"Authorization": f"Bearer {TOKEN}", "content-type": "application/json",
                 "webhook-signature": f"v1,{SECRET}"},
    )
    assert response.status_code == 500
    events = wait_for(transport.events, message="the web error reported")
    assert len(events) == 1
    event = events[0]
    assert event["tags"]["process"] == "web"
    assert event["request"]["method"] == "POST" and event["request"]["url"].endswith("/test-boom")
    assert "data" not in event["request"] or not event["request"]["data"]
    assert event["exception"]["values"][-1]["value"] == "cannot grant [email at kommun.se]"
    assert_no_personal_data(transport.serialized())

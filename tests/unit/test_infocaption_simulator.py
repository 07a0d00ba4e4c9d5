"""The simulator as a webhook sender and as a data set (what tests, the demo and the bench
rely on): signed Standard Webhooks, retried with the same id, lost on request; seeded data."""
from __future__ import annotations

import json
import threading
import unicodedata
from datetime import datetime

import pytest
from standardwebhooks import Webhook
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from service.people.email import normalize_email
from service.demo.simulator import DataSet, Simulator, generate, generate_employees
from tests.conftest import SECRET


@pytest.fixture
def receiver():
    """A webhook endpoint answering from a script of statuses, then 202; records every call."""
    calls: list[dict] = []
    script: list[int] = []

    def app(environ, start_response):
        request = Request(environ)
        calls.append({"headers": dict(request.headers), "body": request.get_data(as_text=True)})
        status = script.pop(0) if script else 202
        headers = {"Retry-After": "0"} if status == 503 else {}
        return Response("{}", status=status, headers=headers)(environ, start_response)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/infocaption", calls, script
    server.shutdown()
    server.server_close()


def test_webhooks_are_signed_and_retried_with_the_same_id(receiver):
    url, calls, script = receiver
    script.extend([503, 500, 429])
    sim = Simulator(generate(1, courses=2, results_per_course=3, employees=3), webhook_url=url,
                    webhook_secret=SECRET, retry_schedule=(0.05, 0.05, 0.05, 0.05)).start()
    try:
        result = sim.add_result(4711, "Anna@Kommun.example", completed_at=datetime.fromisoformat(
            "2026-11-29T12:00:00+01:00"))
        assert sim.drain_webhooks(10)
        assert sim.sender.delivered == 1 and sim.sender.attempts == 4
    finally:
        sim.stop()
    assert len({c["headers"]["Webhook-Id"] for c in calls}) == 1  # one id through every retry
    verifier = Webhook(SECRET)
    for call in calls:
        headers = {k.lower(): v for k, v in call["headers"].items()}
        body = verifier.verify(call["body"], headers)  # raises when the signature is wrong
    assert body["type"] == "course.completed"
    assert body["data"]["resultId"] == result["resultId"]
    assert body["data"]["course"] == {"id": 4711, "name": "HLR vuxen", "guideType": 14}
    assert body["data"]["completedAt"] == "2026-11-29T12:00:00.000+01:00"


def test_lost_webhooks_are_not_sent_and_4xx_is_not_retried(receiver):
    url, calls, script = receiver
    script.append(400)
    sim = Simulator(generate(1, courses=2, results_per_course=3, employees=3), webhook_url=url,
                    webhook_secret=SECRET, retry_schedule=(0.05,)).start()
    try:
        sim.add_result(4711, "a@kommun.example")  # answered 400: given up
        lost = sim.add_result(4711, "b@kommun.example", send_webhook=False)
        sim.delete_course(4712, notify=True)
        assert sim.drain_webhooks(10)
    finally:
        sim.stop()
    # (two senders: the order of arrival is free)
    assert sorted(json.loads(c["body"])["type"] for c in calls) == ["course.completed", "course.deleted"]
    assert lost["resultId"] in sim.lost
    assert sim.sender.given_up == 1


def test_generated_data_is_seeded_and_mixes_what_the_service_must_handle():
    a = generate(9, courses=6, results_per_course=400, employees=80)
    b = generate(9, courses=6, results_per_course=400, employees=80)
    assert a.to_json() == b.to_json()
    assert generate_employees(9, 80) == a.employees  # what seed-demo puts into the service
    types = {c.guide_type for c in a.courses.values()}
    assert {14, 18} <= types and types - {14, 18}  # courses of both types, and guides
    assert any(not c.published for c in a.courses.values() if c.guide_type in (14, 18))
    results = a.all_results()
    staff = {normalize_email(e.email) for e in a.employees}
    emails = [r["user"]["email"] for r in results]
    assert any(e != e.strip() for e in emails) and any(e != e.lower() for e in emails)
    assert any(e != unicodedata.normalize("NFC", e) for e in emails)
    assert any(normalize_email(e) not in staff for e in emails)
    assert {r["passed"] for r in results} == {True, False}
    assert all(datetime.fromisoformat(r["completedAt"]).tzinfo for r in results)
    # the JSON form loads back to the same data set
    assert DataSet.from_json(json.loads(json.dumps(a.to_json()))).to_json() == a.to_json()

"""POST /webhooks/infocaption answers exactly as docs/webhooks.md, "Answers", says."""
from __future__ import annotations

import dataclasses
import json
import socket
from datetime import datetime, timedelta, timezone

import pytest

from service.platform import messaging
from tests.conftest import OLD_SECRET, SECRET, completed_event, dumps, sign

pytestmark = pytest.mark.integration
URL = "/webhooks/infocaption"


def queued(settings) -> list[dict]:
    """Take every message waiting in the test's events queue (and ack them)."""
    out = []
    with messaging.connection(settings) as broker:
        messaging.declare(broker, messaging.topology(settings))
        queue = messaging.topology(settings).queue(messaging.EVENTS)(broker.channel())
        while (msg := queue.get(no_ack=False)) is not None:
            out.append(msg.decode())
            msg.ack()
    return out


def rejected(conn):
    return conn.execute("SELECT status, reason, errors, body, webhook_id FROM rejected_webhooks ORDER BY id").fetchall()


def test_valid_webhook_is_queued_durably_before_202(client, settings, conn):
    raw = dumps(completed_event("r-1", "Anna@Kommun.se"))
    response = client.post(URL, data=raw, headers=sign(raw, msg_id="msg-ok"))
    assert response.status_code == 202
    [event] = queued(settings)
    assert event["webhook_id"] == "msg-ok"
    assert event["result"] == {
        "id": "r-1", "email": "Anna@Kommun.se", "first_name": "Anna", "last_name": "Andersson",
        "passed": True, "score": 92.0, "completed_at": "2026-11-29T12:00:00+01:00",
    }
    assert event["course"] == {"id": 4711, "name": "HLR vuxen", "guide_type": 14}
    assert rejected(conn) == []


def test_a_second_secret_is_accepted_for_rotation(client, settings):
    raw = dumps(completed_event("r-1", "anna@kommun.se"))
    assert client.post(URL, data=raw, headers=sign(raw, secret=OLD_SECRET)).status_code == 202


def test_several_signatures_in_one_header(client, settings):
    raw = dumps(completed_event("r-1", "anna@kommun.se"))
    good = sign(raw, msg_id="m-2")
    other = sign(raw, msg_id="m-2", secret="whsec_" + "QUJDREVGR0hJSktMTU5PUA==")
    good["webhook-signature"] = other["webhook-signature"] + " " + good["webhook-signature"]
    assert client.post(URL, data=raw, headers=good).status_code == 202


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda h, raw: h | sign(raw, secret="whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA=="), id="wrong-secret"),
        pytest.param(lambda h, raw: h | sign(raw, timestamp=datetime.now(timezone.utc) - timedelta(seconds=301)), id="stale"),
        pytest.param(lambda h, raw: h | sign(raw, timestamp=datetime.now(timezone.utc) + timedelta(seconds=301)), id="future"),
        pytest.param(lambda h, raw: h | {"webhook-signature": "garbage"}, id="garbage-header"),
        pytest.param(lambda h, raw: h | {"webhook-signature": "v1,!!!not base64!!!"}, id="not-base64"),
        pytest.param(lambda h, raw: h | {"webhook-signature": "v1"}, id="no-comma"),
        pytest.param(lambda h, raw: h | {"webhook-timestamp": "yesterday"}, id="bad-timestamp"),
        pytest.param(lambda h, raw: {k: v for k, v in h.items() if k != "webhook-signature"}, id="missing-signature"),
        pytest.param(lambda h, raw: {k: v for k, v in h.items() if k != "webhook-id"}, id="missing-id"),
        pytest.param(lambda h, raw: h | {"webhook-id": "another-id"}, id="id-not-signed"),
    ],
)
def test_bad_signatures_are_401_and_nothing_is_queued(client, settings, conn, mutate):
    raw = dumps(completed_event("r-1", "anna@kommun.se"))
    headers = mutate(sign(raw), raw)
    response = client.post(URL, data=raw, headers=headers)
    assert response.status_code == 401
    assert response.json["code"] == 401
    assert queued(settings) == []
    [row] = rejected(conn)
    assert row["status"] == 401 and row["body"] is None


def test_body_changed_after_signing_is_401(client, settings):
    raw = dumps(completed_event("r-1", "anna@kommun.se"))
    headers = sign(raw)
    assert client.post(URL, data=raw.replace("92", "99"), headers=headers).status_code == 401


def test_not_json_is_400_and_kept_for_ops(client, settings, conn):
    raw = "this is { not json"
    response = client.post(URL, data=raw, headers=sign(raw, msg_id="msg-nj"))
    assert response.status_code == 400
    assert response.json["errors"] == {"_body": ["not valid JSON"]}
    [row] = rejected(conn)
    assert (row["status"], row["webhook_id"], bytes(row["body"])) == (400, "msg-nj", raw.encode())
    assert queued(settings) == []


def test_schema_invalid_is_400_with_field_errors_and_kept(client, settings, conn):
    body = completed_event("r-1", "not-an-email")
    body["data"]["passed"] = "yes"
    del body["data"]["completedAt"]
    raw = dumps(body)
    response = client.post(URL, data=raw, headers=sign(raw))
    assert response.status_code == 400
    errors = response.json["errors"]["data"]
    assert set(errors) == {"passed", "completedAt", "user"}
    [row] = rejected(conn)
    assert row["status"] == 400 and row["errors"]["data"]["passed"]
    assert json.loads(bytes(row["body"])) == body
    assert queued(settings) == []


def test_naive_completion_time_is_400(client, settings):
    raw = dumps(completed_event("r-1", "anna@kommun.se", completed_at="2026-11-29T12:00:00"))
    response = client.post(URL, data=raw, headers=sign(raw))
    assert response.status_code == 400
    assert "completedAt" in response.json["errors"]["data"]


def test_body_over_64_kib_is_413(client, settings, conn):
    body = completed_event("r-1", "anna@kommun.se")
    body["padding"] = "x" * (64 * 1024)
    raw = dumps(body)
    response = client.post(URL, data=raw, headers=sign(raw))
    assert response.status_code == 413
    assert [r["status"] for r in rejected(conn)] == [413]
    assert queued(settings) == []


def test_body_of_exactly_64_kib_is_accepted(client, settings):
    body = completed_event("r-1", "anna@kommun.se")
    body["padding"] = ""
    body["padding"] = "x" * (64 * 1024 - len(dumps(body)))
    raw = dumps(body)
    assert len(raw.encode()) == 64 * 1024
    assert client.post(URL, data=raw, headers=sign(raw)).status_code == 202


def test_unknown_type_is_202_ignored_and_not_queued(client, settings):
    raw = dumps({"type": "course.rated", "timestamp": "2026-11-30T10:00:00Z", "data": {}})
    response = client.post(URL, data=raw, headers=sign(raw))
    assert response.status_code == 202
    assert response.json == {"status": "ignored"}
    assert queued(settings) == []


def test_unknown_fields_are_ignored(client, settings):
    body = completed_event("r-1", "anna@kommun.se")
    body["extra"] = {"anything": 1}
    body["data"]["user"]["department"] = "Akuten"
    raw = dumps(body)
    assert client.post(URL, data=raw, headers=sign(raw)).status_code == 202
    [event] = queued(settings)
    assert "department" not in json.dumps(event)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rabbitmq_unreachable_is_503_with_retry_after(settings, pool, conn):
    from service.app import create_app

    down = dataclasses.replace(settings, broker_url=f"amqp://guest:guest@127.0.0.1:{_closed_port()}//")
    app = create_app(down, pool=pool)
    raw = dumps(completed_event("r-1", "anna@kommun.se"))
    response = app.test_client().post(URL, data=raw, headers=sign(raw))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json["code"] == 503


def test_unroutable_publish_is_503_not_202(client, settings):
    """If the queue is gone (deleted by an operator), mandatory routing refuses the 202."""
    from tests.conftest import delete_queues

    raw = dumps(completed_event("r-1", "anna@kommun.se"))
    assert client.post(URL, data=raw, headers=sign(raw)).status_code == 202
    publisher = client.application.extensions["competence_bridge"].publisher
    with messaging.connection(settings) as broker:
        messaging.topology(settings).queue(messaging.EVENTS)(broker.channel()).delete()
    raw = dumps(completed_event("r-2", "anna@kommun.se"))
    assert client.post(URL, data=raw, headers=sign(raw)).status_code == 503
    publisher.close()
    delete_queues(settings)

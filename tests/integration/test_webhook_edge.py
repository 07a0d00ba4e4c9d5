"""The edge refuses what would stall a queue or crash a worker (docs/webhooks.md, "Answers").

Each input is a signed webhook answered 400 (or 413) and kept for ops in a storable form; a
normal webhook sent after it must still become a grant, i.e. nothing got stuck behind it.
"""
from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from service.platform.metrics import WEBHOOKS
from tests.conftest import completed_event, dumps, padded_event, sign, wait_for
from tests.integration.test_pipeline import add_employee, seed_links

pytestmark = pytest.mark.integration
URL = "/webhooks/infocaption"
LIMIT = 64 * 1024


def rejected(conn):
    return conn.execute("SELECT status, errors, webhook_id, headers, body FROM rejected_webhooks ORDER BY id").fetchall()


def then_a_normal_webhook_is_processed(conn, client):
    raw = dumps(completed_event(f"r-ok-{uuid.uuid4().hex[:8]}", "anna@kommun.se"))
    assert client.post(URL, data=raw, headers=sign(raw)).status_code == 202
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM grants").fetchone()["n"] == 2,
             message="the normal webhook's grants")


@pytest.fixture
def pipeline(conn, run_worker):
    seed_links(conn)
    add_employee(conn, "anna@kommun.se")
    run_worker()
    return conn


def _with(mutate):
    body = completed_event("r-bad", "anna@kommun.se")
    mutate(body)
    return dumps(body)  # json.dumps writes a lone surrogate as the escape \ud800, as a sender would


@pytest.mark.parametrize("mutate, where", [
    (lambda b: b["data"]["user"].__setitem__("firstName", "\ud800"), ("data", "user", "firstName")),
    (lambda b: b["data"].__setitem__("note", "ok \udfff"), ("data", "note")),  # an unknown field
    (lambda b: b["data"]["user"].__setitem__("x\ud83d", 1), ("data", "user", "x\\ud83d")),  # a key
    (lambda b: b.__setitem__("extra", ["fine", "nul\x00"]), ("extra", "1")),
])
def test_text_postgresql_cannot_hold_is_400_and_kept(pipeline, client, mutate, where):
    raw = _with(mutate)
    response = client.post(URL, data=raw, headers=sign(raw, msg_id="msg-bad-text"))
    assert response.status_code == 400
    errors = response.json["errors"]
    for key in where[:-1]:
        errors = errors[key]
    assert where[-1] in {str(k) for k in errors}
    [row] = rejected(pipeline)
    assert row["status"] == 400 and row["webhook_id"] == "msg-bad-text"
    assert bytes(row["body"]) == raw.encode()
    then_a_normal_webhook_is_processed(pipeline, client)


def test_a_webhook_id_over_200_characters_is_400_and_kept(pipeline, client):
    raw = _with(lambda b: None)
    long_id = "m" * 7000
    response = client.post(URL, data=raw, headers=sign(raw, msg_id=long_id))
    assert response.status_code == 400
    assert list(response.json["errors"]) == ["webhook-id"]
    [row] = rejected(pipeline)
    assert row["webhook_id"] == "m" * 200
    assert pipeline.execute("SELECT count(*) AS n FROM results").fetchone()["n"] == 0
    ok_id = "m" * 200  # the limit itself is fine
    raw = dumps(completed_event("r-ok", "anna@kommun.se"))
    assert client.post(URL, data=raw, headers=sign(raw, msg_id=ok_id)).status_code == 202
    wait_for(lambda: pipeline.execute("SELECT count(*) AS n FROM grants").fetchone()["n"] == 2,
             message="the grants of the webhook with a 200-character id")


def test_a_rejected_webhook_with_unstorable_headers_is_kept_escaped(pipeline, app):
    """A header PostgreSQL cannot hold (NUL) is stored escaped, and the rejection answered."""
    raw = _with(lambda b: b["data"]["user"].__setitem__("firstName", "\ud800"))
    headers = sign(raw, msg_id="msg-nul")
    environ = {"HTTP_USER_AGENT": "agent\x00x"}
    response = app.test_client().post(URL, data=raw, headers=headers, environ_overrides=environ)
    assert response.status_code == 400
    [row] = rejected(pipeline)
    assert row["headers"]["user-agent"] == "agent\\x00x"
    then_a_normal_webhook_is_processed(pipeline, app.test_client())


@pytest.mark.parametrize("completed_at", [
    "9999-12-31T23:00:00-05:00",
    "1999-12-31T23:59:59Z",
    # Computed when the tests are collected: a margin of hours, not minutes, so that it is
    # still more than a day ahead when a long run reaches this test.
    (datetime.now(timezone.utc) + timedelta(days=1, hours=3)).isoformat(),
])
def test_an_implausible_completion_time_is_400_and_kept(pipeline, client, completed_at):
    raw = dumps(completed_event("r-bad", "anna@kommun.se", completed_at=completed_at))
    response = client.post(URL, data=raw, headers=sign(raw))
    assert response.status_code == 400
    assert list(response.json["errors"]["data"]) == ["completedAt"]
    assert [r["status"] for r in rejected(pipeline)] == [400]
    then_a_normal_webhook_is_processed(pipeline, client)


@pytest.mark.parametrize("completed_at", [
    "2000-01-01T00:00:00Z",
    (datetime.now(timezone.utc) + timedelta(hours=23)).isoformat(),
])
def test_completion_times_at_the_bounds_are_accepted(client, conn, completed_at):
    raw = dumps(completed_event("r-edge", "anna@kommun.se", completed_at=completed_at))
    assert client.post(URL, data=raw, headers=sign(raw)).status_code == 202


# No Content-Length: the body arrives as a stream that the server ends, as gunicorn hands a
# chunked request over (it sets wsgi.input_terminated; tests/e2e/test_web_edge.py does it for real).
CHUNKED = {"wsgi.input_terminated": True}


def _chunked(client, raw: str, signed: str | None = None):
    return client.post(URL, input_stream=io.BytesIO(raw.encode()), environ_overrides=CHUNKED,
                       headers={**sign(raw if signed is None else signed), "Transfer-Encoding": "chunked"})


def test_a_chunked_body_over_64_kib_is_413_even_if_its_prefix_is_signed(client, conn):
    raw = padded_event(LIMIT) + " " * 10  # the first 64 KiB are a complete, validly signed body
    response = _chunked(client, raw, signed=raw[:LIMIT])
    assert response.status_code == 413
    assert [r["status"] for r in rejected(conn)] == [413]
    raw = padded_event(LIMIT + 1)
    assert _chunked(client, raw).status_code == 413


def test_a_chunked_body_of_exactly_64_kib_is_accepted(client, conn):
    assert _chunked(client, padded_event(LIMIT)).status_code == 202


def test_a_content_length_one_byte_over_is_413(client, conn):
    raw = padded_event(LIMIT + 1)
    assert client.post(URL, data=raw, headers=sign(raw)).status_code == 413


def test_unsigned_requests_are_all_counted_and_only_a_sample_kept(app, conn):
    from service.ingest.webhooks import SAMPLE_KEY, UnsignedSample

    now = [0.0]
    app.extensions[SAMPLE_KEY] = UnsignedSample(per_minute=3, clock=lambda: now[0])
    client = app.test_client()
    counted = WEBHOOKS.labels(outcome="rejected_401", type="-", tenant="default")
    before = counted._value.get()
    for _ in range(8):
        assert client.post(URL, data="{}", headers={"webhook-id": "x"}).status_code == 401
    assert counted._value.get() - before == 8
    assert [r["status"] for r in rejected(conn)] == [401] * 3
    now[0] += 60  # the next minute keeps a sample again
    assert client.post(URL, data="{}").status_code == 401
    assert len(rejected(conn)) == 4
    # Signed rejections are never sampled away: each is kept.
    for i in range(5):
        raw = dumps(completed_event(f"r-{i}", "anna@kommun.se", completed_at="1990-01-01T00:00:00Z"))
        assert client.post(URL, data=raw, headers=sign(raw)).status_code == 400
    assert [r["status"] for r in rejected(conn)].count(400) == 5

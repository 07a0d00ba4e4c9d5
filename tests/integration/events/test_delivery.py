"""Outgoing events delivered to a real HTTPS receiver that verifies Standard Webhooks signatures."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from service.events import delivery
from service.events.delivery import Sender, deliver_due
from service.platform import db
from tests.integration.events.conftest import with_changes
from tests.integration.events.helpers import (deliveries, grant, seed, subscribe)



def soon() -> datetime:
    """A moment just after the rows of a test were written (their first attempt is due then)."""
    return datetime.now(timezone.utc) + timedelta(seconds=5)


def test_a_grant_inserted_is_delivered_signed_with_the_subscription_secret(conn, pool, event_settings, receiver):
    T0 = soon()
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    grant_id = grant(conn, ids)

    assert deliver_due(pool, Sender(event_settings), now=T0) == 1

    [request] = receiver.requests
    assert request["verified"], "the signature must verify with the subscription's secret"
    assert request["path"] == "/hooks"
    body = request["json"]
    assert body["type"] == "grant.created"
    assert body["timestamp"].endswith("Z")
    g = body["data"]["grant"]
    assert g == {"id": grant_id, "employee_id": ids["employee"], "employee_email": "anna.andersson@kommun.se",
                 "competence_id": ids["competence"], "competence_name": "HLR vuxen",
                 "valid_from": "2026-11-29", "valid_to": "2028-11-28", "status": "active",
                 "course_id": 4711, "result_id": "r-98765", "source": "webhook"}
    [row] = deliveries(conn, sub["id"])
    assert row["state"] == "delivered" and row["attempts"] == 1 and row["last_status"] == 200
    assert request["headers"]["webhook-id"] == row["webhook_id"]


def test_a_receiver_answering_500_is_retried_within_10_s_with_the_same_webhook_id(conn, pool, event_settings, receiver):
    T0 = soon()
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    grant(conn, ids)
    receiver.script = ["500", "500"]
    sender = Sender(event_settings)

    deliver_due(pool, sender, now=T0)
    [row] = deliveries(conn, sub["id"])
    assert row["state"] == "pending" and row["last_status"] == 500
    assert row["next_attempt_at"] - T0 <= timedelta(seconds=10), "the first retry comes within 10 s"
    assert deliver_due(pool, sender, now=T0 + timedelta(seconds=1)) == 0, "not due yet"

    now = row["next_attempt_at"]
    deliver_due(pool, sender, now=now)
    [row] = deliveries(conn, sub["id"])
    assert row["next_attempt_at"] - now > timedelta(seconds=10), "then backs off"
    deliver_due(pool, sender, now=row["next_attempt_at"])

    [row] = deliveries(conn, sub["id"])
    assert row["state"] == "delivered" and row["attempts"] == 3
    assert [r["answer"] for r in receiver.requests] == ["500", "500", "ok"]
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {row["webhook_id"]}
    assert all(r["verified"] for r in receiver.requests)
    assert len({r["body"] for r in receiver.requests}) == 1, "every retry carries the same body"


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(conn, pool, event_settings, receiver):
    T0 = soon()
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    grant(conn, ids)
    receiver.script = ["timeout"]

    deliver_due(pool, Sender(event_settings, timeout_s=0.5), now=T0)

    [row] = deliveries(conn, sub["id"])
    assert row["state"] == "pending" and row["attempts"] == 1
    assert "timed out" in row["last_error"].lower() or "timeout" in row["last_error"].lower()


def test_a_redirect_is_not_followed(conn, pool, event_settings, receiver):
    T0 = soon()
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    grant(conn, ids)
    receiver.script = ["redirect"]

    deliver_due(pool, Sender(event_settings), now=T0)

    assert [r["path"] for r in receiver.requests] == ["/hooks"], "the Location was not requested"
    [row] = deliveries(conn, sub["id"])
    assert row["state"] == "pending" and row["last_status"] == 302
    assert "redirect" in row["last_error"]


def test_events_of_one_grant_are_delivered_in_order(conn, pool, event_settings, receiver):
    T0 = soon()
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created", "grant.revoked"])
    first = grant(conn, ids)
    other_employee = conn.execute("INSERT INTO employees (email, email_normalized) VALUES"
                                  " ('bo@kommun.se', 'bo@kommun.se') RETURNING id").fetchone()["id"]
    other = grant(conn, {**ids, "employee": other_employee}, result_id="r-2")
    conn.execute("UPDATE grants SET revoked_at = now(), revoked_reason = 'fel person', revoked_by = 'admin'"
                 " WHERE id = %s", (first,))
    sender = Sender(event_settings)
    receiver.script = ["500"]  # the first grant's grant.created fails once

    deliver_due(pool, sender, now=T0)
    sent = [(r["json"]["type"], r["json"]["data"]["grant"]["id"]) for r in receiver.requests]
    assert sent == [("grant.created", first), ("grant.created", other)], \
        "the revocation waits for the creation of its grant; another grant does not wait"

    retry_at = deliveries(conn, sub["id"])[0]["next_attempt_at"]
    deliver_due(pool, sender, now=retry_at)
    sent = [(r["json"]["type"], r["json"]["data"]["grant"]["id"]) for r in receiver.requests]
    assert sent[2:] == [("grant.created", first), ("grant.revoked", first)]
    assert all(d["state"] == "delivered" for d in deliveries(conn, sub["id"]))


def test_after_24_hours_of_failures_a_delivery_is_failed_and_can_be_re_sent(conn, pool, event_settings,
                                                                           receiver, app):
    T0 = soon()
    from tests.integration.api.conftest import Api
    from service.access import tokens

    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    grant(conn, ids)
    receiver.default = "500"
    sender = Sender(event_settings)
    now, attempts = T0, 0
    while True:
        deliver_due(pool, sender, now=now)
        attempts += 1
        [row] = deliveries(conn, sub["id"])
        if row["state"] != "pending":
            break
        assert attempts < 100
        now = row["next_attempt_at"]
    assert row["state"] == "failed" and row["attempts"] == attempts == len(receiver.requests)
    assert now - T0 >= timedelta(hours=24), "retried for at least 24 hours"
    assert now - T0 < timedelta(hours=28)
    assert attempts >= 10, "exponential backoff, not one retry a day"
    assert all(r["verified"] for r in receiver.requests), "signed at the real time, whatever the clock"
    assert deliver_due(pool, sender, now=now + timedelta(days=3)) == 0, "failed for good: not retried"
    from service.ops.state import database_state

    assert database_state(conn).event_deliveries == {"pending": 0, "failed": 1}, "the gauge ops alert on"

    api = Api(app.test_client(), tokens.create(conn, "admin", ["administer_competence_integrations"], actor="test"))
    listed = api.get(f"/api/v1/subscriptions/{sub['id']}/deliveries?state=failed")
    assert listed.status_code == 200
    [logged] = listed.get_json()
    assert logged["state"] == "failed" and logged["last_status"] == 500 and logged["attempts"] == attempts

    receiver.default = "ok"
    answer = api.post(f"/api/v1/subscriptions/{sub['id']}/deliveries/{logged['id']}/resend")
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["state"] == "pending"
    assert api.post(f"/api/v1/subscriptions/{sub['id']}/deliveries/{logged['id']}/resend").status_code == 409
    deliver_due(pool, sender)  # the real clock: the re-send is due now
    [row] = deliveries(conn, sub["id"])
    assert row["state"] == "delivered"
    assert receiver.requests[-1]["verified"]
    assert receiver.requests[-1]["headers"]["webhook-id"] == logged["webhook_id"]
    audit = conn.execute("SELECT action FROM audit_log WHERE action = 'delivery.resend'").fetchall()
    assert len(audit) == 1


def test_a_private_address_is_refused_at_delivery_without_the_flag(conn, pool, event_settings, receiver):
    """The subscription was accepted (the flag was on then); the address is checked when sending."""
    T0 = soon()
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    grant(conn, ids)
    strict = with_changes(event_settings, subscriber_allow_private=False)

    deliver_due(pool, Sender(strict), now=T0)

    assert receiver.requests == [], "nothing was sent to a loopback address"
    [row] = deliveries(conn, sub["id"])
    assert row["state"] == "pending" and row["last_status"] is None
    assert "private" in row["last_error"] and "127.0.0.1" in row["last_error"]

    deliver_due(pool, Sender(event_settings), now=row["next_attempt_at"])  # with the flag: sent
    assert len(receiver.requests) == 1


def test_a_host_name_is_resolved_and_checked_at_delivery(event_settings):
    strict = with_changes(event_settings, subscriber_allow_private=False)
    with pytest.raises(delivery.Refused, match="private"):
        delivery.resolve("https://localhost:9/x", strict)
    with pytest.raises(delivery.Refused, match="private"):
        delivery.resolve("https://10.1.2.3/x", strict)
    with pytest.raises(delivery.Refused, match="private"):
        delivery.resolve("https://[::ffff:192.168.0.1]/x", strict)
    with pytest.raises(delivery.Refused, match="private"):
        delivery.resolve("https://169.254.169.254/latest", strict)
    assert delivery.resolve("https://localhost:9/x", event_settings)[3] in ("127.0.0.1", "::1")


def test_http_is_refused_at_delivery_outside_demo_mode(conn, pool, event_settings, receiver):
    T0 = soon()
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    conn.execute("UPDATE subscriptions SET url = %s", (f"http://localhost:{receiver.port}/hooks",))
    grant(conn, ids)

    deliver_due(pool, Sender(event_settings), now=T0)

    assert receiver.requests == []
    [row] = deliveries(conn, sub["id"])
    assert "https://" in row["last_error"]


def test_tls_is_verified_against_the_trust_store(conn, pool, event_settings, receiver):
    """Without REQUESTS_CA_BUNDLE the test CA is not trusted: the attempt fails, nothing is sent."""
    T0 = soon()
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    grant(conn, ids)

    deliver_due(pool, Sender(with_changes(event_settings, ca_bundle=None)), now=T0)

    [row] = deliveries(conn, sub["id"])
    assert row["state"] == "pending" and "CERTIFICATE_VERIFY_FAILED" in row["last_error"]
    assert receiver.requests == []


def test_two_senders_never_send_one_delivery_twice(conn, pool, event_settings, receiver, database_url):
    T0 = soon()
    ids = seed(conn)
    subscribe(conn, event_settings, receiver, ["grant.created"])
    for n in range(12):
        employee = conn.execute("INSERT INTO employees (email, email_normalized) VALUES (%s, %s) RETURNING id",
                                (f"p{n}@kommun.se", f"p{n}@kommun.se")).fetchone()["id"]
        grant(conn, {**ids, "employee": employee}, result_id=f"r-{n}")
    receiver.delay_s = 0.05
    other = db.make_pool(database_url, max_size=2, name="second-sender")
    try:
        threads = [threading.Thread(target=deliver_due, args=(p, Sender(event_settings)), kwargs={"now": T0})
                   for p in (pool, other, pool, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        other.close()
    ids_sent = [r["headers"]["webhook-id"] for r in receiver.requests]
    assert len(ids_sent) == 12 and len(set(ids_sent)) == 12


def test_the_delivery_loop_of_the_worker_sends_by_itself(conn, event_settings, receiver, database_url):
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    loop = delivery.DeliveryLoop(event_settings, database_url, threads=2)
    loop.start()
    try:
        grant(conn, ids)
        from tests.conftest import wait_for

        wait_for(lambda: deliveries(conn, sub["id"])[0]["state"] == "delivered", timeout=30,
                 message="the loop delivered the event")
    finally:
        loop.stop()
    assert len(receiver.requests) == 1 and receiver.requests[0]["verified"]


def test_a_worker_that_was_down_for_days_does_not_shorten_the_retry_horizon(conn, pool, event_settings, receiver):
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    grant(conn, ids)
    receiver.default = "500"
    later = soon() + timedelta(days=3)  # the first attempt, three days after the event

    deliver_due(pool, Sender(event_settings), now=later)

    [row] = deliveries(conn, sub["id"])
    assert row["state"] == "pending" and row["attempts"] == 1 and row["retry_since"] == later


def test_delivered_deliveries_are_forgotten_after_30_days_failed_ones_stay(conn, pool, event_settings, receiver):
    from workers.scheduler import prune_delivered

    ids = seed(conn)
    a = subscribe(conn, event_settings, receiver, ["grant.created"])
    b = subscribe(conn, event_settings, receiver, ["grant.created"])
    grant(conn, ids)
    receiver.script = ["ok", "500"]  # a's delivered, b's pending
    T0 = soon()
    deliver_due(pool, Sender(event_settings), now=T0)
    assert prune_delivered(pool, now=T0 + timedelta(days=29)) == 0
    assert prune_delivered(pool, now=T0 + timedelta(days=31)) == 1
    assert deliveries(conn, a["id"]) == [] and len(deliveries(conn, b["id"])) == 1
    assert conn.execute("SELECT count(*) AS n FROM outgoing_events").fetchone()["n"] == 1, "b still needs it"
    conn.execute("UPDATE event_deliveries SET state = 'delivered', delivered_at = %s", (T0,))
    assert prune_delivered(pool, now=T0 + timedelta(days=31)) == 1
    assert conn.execute("SELECT count(*) AS n FROM outgoing_events").fetchone()["n"] == 0


def test_only_the_first_bytes_of_an_answer_are_read(conn, pool, event_settings, receiver):
    """A 2xx with an endless body is a success once 64 KiB were read, not a wait for its end."""
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    grant(conn, ids)
    receiver.script = ["endless"]

    deliver_due(pool, Sender(event_settings, timeout_s=5), now=soon())

    [row] = deliveries(conn, sub["id"])
    assert row["state"] == "delivered" and row["last_status"] == 200, row["last_error"]


def test_the_connection_goes_to_the_address_checked_never_to_a_second_answer(conn, pool, event_settings,
                                                                            receiver, monkeypatch):
    """DNS rebinding: the name is resolved once per attempt and that address is the one dialled."""
    import socket

    from tests.integration.events.conftest import REBINDING_HOST

    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    conn.execute("UPDATE subscriptions SET url = %s", (f"https://{REBINDING_HOST}:{receiver.port}/hooks",))
    grant(conn, ids)
    real, asked = socket.getaddrinfo, []

    def rebinding(host, port, *args, **kwargs):
        if host != REBINDING_HOST:
            return real(host, port, *args, **kwargs)
        asked.append(host)  # the first answer is the receiver, any later one an address where nothing listens
        address = "127.0.0.1" if len(asked) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    deliver_due(pool, Sender(event_settings, timeout_s=2), now=soon())

    [row] = deliveries(conn, sub["id"])
    assert row["state"] == "delivered", row["last_error"]
    assert asked == [REBINDING_HOST], "resolved once, by the guard"
    assert receiver.requests[0]["headers"]["host"] == f"{REBINDING_HOST}:{receiver.port}"

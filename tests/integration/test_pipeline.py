"""A signed webhook becomes grants: ingest on real RabbitMQ, worker on real PostgreSQL."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from service.grants.pipeline import grant_unmatched
from tests.conftest import completed_event, dumps, sign, wait_for

pytestmark = pytest.mark.integration


def seed_links(conn, course_id=4711, valid_days=(730, None), window=None):
    """A course linked to competences; returns the competence ids."""
    conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (%s, 'HLR vuxen', 14)", (course_id,))
    main = conn.execute("INSERT INTO competences (name, kind) VALUES ('Vård', 'main_group') RETURNING id").fetchone()["id"]
    group = conn.execute("INSERT INTO competences (parent_id, name, kind) VALUES (%s, 'Akut', 'group') RETURNING id", (main,)).fetchone()["id"]
    ids = []
    for i, days in enumerate(valid_days):
        cid = conn.execute(
            "INSERT INTO competences (parent_id, name, kind, default_valid_days, renewal_window_days)"
            " VALUES (%s, %s, 'competence', %s, %s) RETURNING id",
            (group, f"HLR {i}", days, window),
        ).fetchone()["id"]
        conn.execute("INSERT INTO links (course_id, competence_id, created_by) VALUES (%s, %s, 'test')", (course_id, cid))
        ids.append(cid)
    return ids


def add_employee(conn, email):
    from service.people.email import normalize_email

    return conn.execute(
        "INSERT INTO employees (email, email_normalized) VALUES (%s, %s) RETURNING id",
        (email, normalize_email(email)),
    ).fetchone()["id"]


def post(client, body, **sign_kwargs):
    raw = dumps(body)
    return client.post("/webhooks/infocaption", data=raw, headers=sign(raw, **sign_kwargs))


def grants(conn):
    return conn.execute(
        "SELECT employee_id, competence_id, valid_from, valid_to, source, course_id, result_id, webhook_id"
        " FROM grants ORDER BY competence_id"
    ).fetchall()


def held(conn):
    """The grants not revoked."""
    return conn.execute(
        "SELECT employee_id, competence_id, valid_from, valid_to, source, course_id, result_id, webhook_id"
        " FROM grants WHERE revoked_at IS NULL ORDER BY competence_id, valid_from"
    ).fetchall()


def result_status(conn, rid):
    row = conn.execute("SELECT status FROM results WHERE id = %s", (rid,)).fetchone()
    return row and row["status"]


def test_passed_result_grants_every_linked_competence_with_dates(conn, client, run_worker):
    two_years, forever = seed_links(conn)
    emp = add_employee(conn, "anna.andersson@kommun.se")
    run_worker()
    # 23:30 UTC on 29 Nov is 00:30 on 30 Nov in Stockholm: a 30 Nov pass.
    body = completed_event("r-1", "  Anna.Andersson@Kommun.se ", completed_at="2026-11-29T23:30:00Z")
    raw = dumps(body)
    headers = sign(raw, msg_id="msg-1")
    assert client.post("/webhooks/infocaption", data=raw, headers=headers).status_code == 202

    rows = wait_for(lambda: len(grants(conn)) == 2 and grants(conn), message="two grants")
    by_comp = {r["competence_id"]: r for r in rows}
    assert by_comp[two_years]["valid_from"] == date(2026, 11, 30)
    assert by_comp[two_years]["valid_to"] == date(2026, 11, 30) + timedelta(days=730)  # 2028-11-29: leap year
    assert by_comp[forever]["valid_from"] == date(2026, 11, 30)
    assert by_comp[forever]["valid_to"] is None
    for r in rows:
        assert (r["employee_id"], r["course_id"], r["result_id"], r["webhook_id"], r["source"]) == (
            emp, 4711, "r-1", "msg-1", "webhook")
    assert result_status(conn, "r-1") == "granted"


def test_same_webhook_five_times_is_processed_once(conn, client, run_worker):
    seed_links(conn)
    add_employee(conn, "anna.andersson@kommun.se")
    raw = dumps(completed_event("r-1", "anna.andersson@kommun.se"))
    headers = sign(raw, msg_id="msg-same")
    for _ in range(5):
        assert client.post("/webhooks/infocaption", data=raw, headers=headers).status_code == 202
    run_worker()
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM webhook_receipts").fetchone()["n"] == 1)
    # every delivery handled: the queue is drained
    wait_for(lambda: _queue_depth(client) == 0, message="queue drained")
    assert conn.execute("SELECT count(*) AS n FROM results").fetchone()["n"] == 1
    assert len(grants(conn)) == 2


def _queue_depth(client):
    from service.platform import messaging

    svc = client.application.extensions["competence_bridge"]
    with messaging.connection(svc.settings) as broker:
        q = messaging.topology(svc.settings).queue(messaging.EVENTS)(broker.channel())
        _, depth, _ = q.queue_declare(passive=True)
        return depth


def test_failed_result_is_recorded_and_grants_nothing(conn, client, run_worker):
    seed_links(conn)
    add_employee(conn, "anna.andersson@kommun.se")
    run_worker()
    assert post(client, completed_event("r-f", "anna.andersson@kommun.se", passed=False)).status_code == 202
    wait_for(lambda: result_status(conn, "r-f") == "failed", message="failed result recorded")
    assert grants(conn) == []


def test_failed_result_that_later_passes_grants(conn, client, run_worker):
    seed_links(conn)
    add_employee(conn, "anna.andersson@kommun.se")
    run_worker()
    post(client, completed_event("r-x", "anna.andersson@kommun.se", passed=False, timestamp="2026-11-29T10:00:00Z"))
    wait_for(lambda: result_status(conn, "r-x") == "failed")
    post(client, completed_event("r-x", "anna.andersson@kommun.se", passed=True, timestamp="2026-11-29T11:00:00Z"))
    wait_for(lambda: result_status(conn, "r-x") == "granted", message="the result re-decided")
    assert len(grants(conn)) == 2


def test_unknown_email_is_unmatched_until_the_employee_is_created(conn, client, run_worker):
    seed_links(conn)
    run_worker()
    post(client, completed_event("r-u", "Nobody.Yet@Kommun.se"))
    wait_for(lambda: result_status(conn, "r-u") == "unmatched", message="unmatched")
    assert grants(conn) == []
    emp = add_employee(conn, "nobody.yet@kommun.se")
    out = grant_unmatched(conn, [" NOBODY.yet@kommun.se"], tz="Europe/Stockholm")
    assert out.grants_created == 2
    assert {g["employee_id"] for g in grants(conn)} == {emp}
    assert {g["source"] for g in grants(conn)} == {"employee_update"}
    assert result_status(conn, "r-u") == "granted"


def test_existing_grant_is_left_untouched(conn, client, run_worker):
    comp, _ = seed_links(conn)
    emp = add_employee(conn, "anna.andersson@kommun.se")
    conn.execute(
        "INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source)"
        " VALUES (%s, %s, '2020-01-01', '2099-01-01', 'manual')", (emp, comp))
    run_worker()
    post(client, completed_event("r-1", "anna.andersson@kommun.se"))
    wait_for(lambda: len(grants(conn)) == 2)
    [old] = [g for g in grants(conn) if g["competence_id"] == comp]
    assert (old["valid_from"], old["valid_to"], old["source"], old["result_id"]) == (
        date(2020, 1, 1), date(2099, 1, 1), "manual", None)

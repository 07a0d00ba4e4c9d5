"""Grants: list with evidence, validity and status; revoke with a reason; a revoked grant stays revoked."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from service.grants.pipeline import evaluate_results
from tests.conftest import completed_event, dumps, sign, wait_for
from tests.integration.api.conftest import (add_course, add_employee, add_grant, add_link, add_tree,
                                            audit_rows)

pytestmark = pytest.mark.integration


def test_list_grants_with_evidence_and_filters(conn, api):
    add_course(conn, 4711)
    tree = add_tree(conn)
    other = conn.execute("INSERT INTO competences (parent_id, name, kind) VALUES (%s, 'Other', 'competence')"
                         " RETURNING id", (tree["group"],)).fetchone()["id"]
    link = add_link(conn, 4711, tree["leaf"])
    anna, eva = add_employee(conn, "anna@kommun.se"), add_employee(conn, "eva@kommun.se")
    g1 = add_grant(conn, anna, tree["leaf"], result_id="r-1", link_id=link)
    g2 = add_grant(conn, anna, other, result_id="r-2")
    g3 = add_grant(conn, eva, tree["leaf"], result_id="r-3")
    r = api.get("/api/v1/grants")
    assert r.status_code == 200
    first = r.get_json()[0]
    assert first == {**first, "id": g1, "employee_id": anna, "competence_id": tree["leaf"],
                     "valid_from": "2026-11-30", "valid_to": "2028-11-29", "source": "webhook",
                     "course_id": 4711, "result_id": "r-1", "link_id": link, "webhook_id": None,
                     "employee_email": "anna@kommun.se", "employee_name": None,
                     "competence_name": "HLR", "revoked_at": None, "revoked_reason": None}
    assert first["status"] in ("active", "upcoming")  # valid from 2026-11-30, whatever today is
    assert [g["id"] for g in api.get(f"/api/v1/grants?employee_id={anna}").get_json()] == [g1, g2]
    assert [g["id"] for g in api.get(f"/api/v1/grants?competence_id={tree['leaf']}").get_json()] == [g1, g3]
    assert [g["id"] for g in api.get(f"/api/v1/grants?employee_id={eva}&competence_id={other}").get_json()] == []
    assert api.get("/api/v1/grants?employee_id=0").status_code == 422
    assert api.get("/api/v1/grants?status=valid").status_code == 422


def test_revoke_needs_a_reason(conn, api):
    add_course(conn, 4711)
    tree = add_tree(conn)
    grant = add_grant(conn, add_employee(conn, "anna@kommun.se"), tree["leaf"])
    for kwargs in ({}, {"json": {}}, {"json": {"reason": ""}}, {"json": {"reason": "   "}},
                   {"json": {"reason": None}}, {"json": {"reason": "x", "force": True}}):
        r = api.delete(f"/api/v1/grants/{grant}", **kwargs)
        assert r.status_code == 422, (kwargs, r.get_json())
        assert set(r.get_json()) == {"code", "message", "errors"}
    assert conn.execute("SELECT count(*) AS n FROM grants").fetchone()["n"] == 1
    assert api.delete("/api/v1/grants/999", json={"reason": "wrong person"}).status_code == 404


def test_revoke_keeps_the_grant_as_revoked_history_and_remembers_why(conn, api):
    # Changed meaning (rule 5): a revoked grant stays a row, with its status, reason and time.
    add_course(conn, 4711)
    tree = add_tree(conn)
    emp = add_employee(conn, "anna@kommun.se")
    grant = add_grant(conn, emp, tree["leaf"], result_id="r-1")
    r = api.delete(f"/api/v1/grants/{grant}", json={"reason": "  registered on the wrong person "})
    assert r.status_code == 200
    revoked = r.get_json()
    assert revoked == {**revoked, "id": grant, "employee_id": emp, "competence_id": tree["leaf"],
                       "result_id": "r-1", "valid_from": "2026-11-30", "valid_to": "2028-11-29",
                       "status": "revoked", "revoked_reason": "registered on the wrong person",
                       "revoked_by": "admin"}
    assert revoked["revoked_at"] is not None
    stored = conn.execute("SELECT id, revoked_reason, revoked_by, result_id FROM grants").fetchall()
    assert stored == [{"id": grant, "revoked_reason": "registered on the wrong person",
                       "revoked_by": "admin", "result_id": "r-1"}]
    [listed] = api.get(f"/api/v1/grants?employee_id={emp}").get_json()
    assert listed == revoked
    assert api.get("/api/v1/grants?status=revoked").get_json() == [revoked]
    assert api.get("/api/v1/grants?status=active").get_json() == []
    [row] = audit_rows(conn, "grant.revoke")
    assert row["target"] == f"grant:{grant}" and row["actor"] == "admin"
    assert row["after"]["reason"] == "registered on the wrong person"
    assert row["before"]["result_id"] == "r-1" and row["before"]["status"] == "active"
    assert "employee_email" not in row["before"]
    again = api.delete(f"/api/v1/grants/{grant}", json={"reason": "again"})
    assert again.status_code == 409  # revoked already, not unknown
    assert again.get_json()["errors"]["reason"] == ["registered on the wrong person"]
    assert conn.execute("SELECT revoked_reason FROM grants").fetchone()["revoked_reason"] == (
        "registered on the wrong person")  # the first revocation stands


def _processed(conn, webhook_id):
    return conn.execute("SELECT 1 FROM webhook_receipts WHERE webhook_id = %s", (webhook_id,)).fetchone()


def _queue_depth(app):
    from service.platform import messaging

    svc = app.extensions["competence_bridge"]
    with messaging.connection(svc.settings) as broker:
        queue = messaging.topology(svc.settings).queue(messaging.EVENTS)(broker.channel())
        return queue.queue_declare(passive=True)[1]


def _grants(conn):
    """The grants held (not revoked)."""
    return conn.execute("SELECT employee_id, result_id FROM grants WHERE revoked_at IS NULL").fetchall()


def test_a_revoked_grant_stays_revoked_when_the_webhook_comes_again(conn, app, client, api, run_worker):
    add_course(conn, 4711)
    tree = add_tree(conn)
    add_link(conn, 4711, tree["leaf"])
    emp = add_employee(conn, "anna.andersson@kommun.se")
    run_worker()
    raw = dumps(completed_event("r-1", "anna.andersson@kommun.se"))
    first = sign(raw, msg_id="msg-first")
    assert client.post("/webhooks/infocaption", data=raw, headers=first).status_code == 202
    [grant] = wait_for(lambda: conn.execute("SELECT id FROM grants").fetchall(), message="the grant")

    assert api.delete(f"/api/v1/grants/{grant['id']}", json={"reason": "did not attend"}).status_code == 200
    assert _grants(conn) == []  # nothing held; the revoked row stays (rule 5)
    assert conn.execute("SELECT revoked_reason FROM grants").fetchall() == [{"revoked_reason": "did not attend"}]

    # InfoCaption sends the same result again under a new webhook id ...
    again = sign(raw, msg_id="msg-second")
    assert client.post("/webhooks/infocaption", data=raw, headers=again).status_code == 202
    wait_for(lambda: _processed(conn, "msg-second"), message="the redelivery processed")
    # ... and the very same webhook once more (the sender retried it).
    assert client.post("/webhooks/infocaption", data=raw, headers=first).status_code == 202
    # ... and the result changed (a later timestamp, another score), so it is decided again.
    changed = completed_event("r-1", "anna.andersson@kommun.se", timestamp="2099-01-01T00:00:00Z")
    changed["data"]["score"] = 99
    raw_changed = dumps(changed)
    assert client.post("/webhooks/infocaption", data=raw_changed,
                       headers=sign(raw_changed, msg_id="msg-third")).status_code == 202
    wait_for(lambda: _processed(conn, "msg-third"), message="the changed result processed")
    wait_for(lambda: _queue_depth(app) == 0, message="every delivery consumed")
    assert _grants(conn) == []
    # A reconciliation or backfill deciding the same result again does not re-create it either.
    evaluate_results(conn, ["r-1"], source="reconciliation", tz="Europe/Stockholm")
    assert _grants(conn) == []

    # Only a later passed result (another result id) grants it again.
    later = (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()
    raw_later = dumps(completed_event("r-2", "anna.andersson@kommun.se", completed_at=later))
    assert client.post("/webhooks/infocaption", data=raw_later,
                       headers=sign(raw_later, msg_id="msg-later")).status_code == 202
    wait_for(lambda: _grants(conn), message="the later result's grant")
    assert _grants(conn) == [{"employee_id": emp, "result_id": "r-2"}]


def test_every_grant_carries_its_status_today_and_lists_filter_by_it(conn, api):
    import json
    from datetime import date, timedelta

    add_course(conn, 4711)
    tree = add_tree(conn, valid_days=365)
    emp = add_employee(conn, "anna@kommun.se")
    conn.execute("UPDATE employees SET first_name = 'Anna', last_name = 'Andersson' WHERE id = %s", (emp,))
    today = date.today()  # the margins below keep the Stockholm date on the same side
    insert = ("INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source, result_id)"
              " VALUES (%s, %s, %s, %s, 'webhook', %s) RETURNING id")
    past = conn.execute(insert, (emp, tree["leaf"], today - timedelta(days=400), today - timedelta(days=35), "r-past")).fetchone()["id"]
    now = conn.execute(insert, (emp, tree["leaf"], today - timedelta(days=30), today + timedelta(days=30), "r-now")).fetchone()["id"]
    later = conn.execute(insert, (emp, tree["leaf"], today + timedelta(days=31), today + timedelta(days=396), "r-next")).fetchone()["id"]
    listed = api.get(f"/api/v1/grants?employee_id={emp}").get_json()
    assert [(g["id"], g["status"]) for g in listed] == [(past, "expired"), (now, "active"), (later, "upcoming")]
    assert {(g["employee_email"], g["employee_name"], g["competence_name"]) for g in listed} == {
        ("anna@kommun.se", "Anna Andersson", "HLR")}
    for status, ids in (("expired", [past]), ("active", [now]), ("upcoming", [later]), ("revoked", [])):
        r = api.get(f"/api/v1/grants?status={status}")
        assert [g["id"] for g in r.get_json()] == ids, status
        assert json.loads(r.headers["X-Pagination"])["total"] == len(ids), status
    assert api.delete(f"/api/v1/grants/{now}", json={"reason": "wrong course"}).status_code == 200
    assert [g["id"] for g in api.get("/api/v1/grants?status=revoked").get_json()] == [now]
    assert [g["id"] for g in api.get("/api/v1/grants?status=active").get_json()] == []

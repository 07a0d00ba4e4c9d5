"""Why per employee: every result kept for the employee's email with its outcome and grant
(docs/admin-api.md, "Results of an employee"), decided by the real grant step."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from service.access.auth import SETTINGS
from service.grants.pipeline import ResultRecord, apply_course_status, apply_results
from tests.integration.api.conftest import add_course, add_employee, add_link, add_tree

pytestmark = pytest.mark.integration

TZ = "Europe/Stockholm"
T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def record(rid: str, email: str, course: int, at: datetime, *, passed: bool = True) -> ResultRecord:
    return ResultRecord(rid, course, f"Kurs {course}", 14, email, None, None, passed, 90.0, at, at)


def results(api, employee: int, **query) -> list[dict]:
    r = api.get(f"/api/v1/employees/{employee}/results", query_string={"page_size": 100, **query})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def outcomes(rows: list[dict]) -> list[tuple]:
    return [(r["result_id"], r["competence_id"], r["outcome"]) for r in rows]


def test_each_result_says_what_it_did_and_why(conn, api):
    tree = add_tree(conn)
    hlr = tree["leaf"]
    for course in (4711, 4712, 4713):
        add_course(conn, course, name=f"Kurs {course}")
    add_link(conn, 4711, hlr)
    apply_course_status(conn, {"id": 4713, "name": "Kurs 4713", "guide_type": 14}, "unpublished",
                        T0, source="webhook", tz=TZ)
    anna = add_employee(conn, "anna@kommun.se")
    apply_results(conn, [
        record("r-1", "Anna@Kommun.SE ", 4711, T0),                          # granted
        record("r-2", "anna@kommun.se", 4711, T0 + timedelta(days=30)),      # already held
        record("r-3", "ANNA@kommun.se", 4711, T0 + timedelta(days=1), passed=False),
        record("r-4", "anna@kommun.se", 4712, T0 + timedelta(days=2)),       # course linked to nothing
        record("r-5", "anna@kommun.se", 4713, T0 + timedelta(days=3)),       # course unpublished
        record("r-9", "other@kommun.se", 4711, T0),                          # somebody else's
    ], source="webhook", tz=TZ)
    [grant] = conn.execute("SELECT id FROM grants WHERE employee_id = %s", (anna,)).fetchall()
    rows = results(api, anna)
    assert outcomes(rows) == [
        ("r-2", hlr, "already_held"),
        ("r-5", None, "course_not_published"),
        ("r-4", None, "not_linked"),
        ("r-3", hlr, "not_passed"),
        ("r-1", hlr, "granted"),
    ]
    by_id = {r["result_id"]: r for r in rows}
    assert by_id["r-1"] == {"result_id": "r-1", "course_id": 4711, "course_name": "Kurs 4711",
                            "passed": True, "completed_at": "2026-03-01T12:00:00+00:00",
                            "competence_id": hlr, "competence_name": "HLR", "outcome": "granted",
                            "grant_id": grant["id"]}
    assert [r["grant_id"] for r in rows if r["result_id"] != "r-1"] == [None] * 4
    assert by_id["r-3"]["passed"] is False
    # A competence linked later, before its backfill reached the result: not granted yet.
    later = conn.execute("INSERT INTO competences (parent_id, name, kind) VALUES (%s, 'Brand', 'competence')"
                         " RETURNING id", (tree["group"],)).fetchone()["id"]
    add_link(conn, 4711, later)
    rows = results(api, anna)
    assert ("r-1", later, "pending") in outcomes(rows) and ("r-1", hlr, "granted") in outcomes(rows)
    # Paged like every list.
    page = api.get(f"/api/v1/employees/{anna}/results?page_size=2&page=2")
    assert json.loads(page.headers["X-Pagination"])["total"] == 8  # r-1 .. r-3 twice: two competences
    assert [r["result_id"] for r in page.get_json()] == ["r-5", "r-4"]


def test_a_revocation_bars_the_results_it_covers(conn, api):
    tree = add_tree(conn)
    add_course(conn, 4711)
    add_link(conn, 4711, tree["leaf"])
    eva = add_employee(conn, "eva@kommun.se")
    apply_results(conn, [record("r-1", "eva@kommun.se", 4711, T0)], source="webhook", tz=TZ)
    [grant] = conn.execute("SELECT id FROM grants").fetchall()
    assert api.delete(f"/api/v1/grants/{grant['id']}", json={"reason": "fel person"}).status_code == 200
    # A result completed before the revocation that arrives after it grants nothing either;
    # one completed after the revocation grants again.
    revoked_at = conn.execute("SELECT revoked_at FROM grant_revocations").fetchone()["revoked_at"]
    apply_results(conn, [record("r-2", "eva@kommun.se", 4711, revoked_at - timedelta(hours=1)),
                         record("r-3", "eva@kommun.se", 4711, revoked_at + timedelta(seconds=1))],
                  source="webhook", tz=TZ)
    rows = results(api, eva)
    assert outcomes(rows) == [("r-3", tree["leaf"], "granted"), ("r-2", tree["leaf"], "revoked_before"),
                              ("r-1", tree["leaf"], "revoked_before")]
    assert rows[2]["grant_id"] == grant["id"]  # the grant it made, revoked since
    assert rows[1]["grant_id"] is None


def test_a_revoked_grant_kept_as_a_row_is_read_as_revoked(conn, api):
    # Grants as periods keep a revoked grant as a row with revoked_at set.
    tree = add_tree(conn)
    add_course(conn, 4711)
    add_link(conn, 4711, tree["leaf"])
    frida = add_employee(conn, "frida@kommun.se")
    apply_results(conn, [record("r-1", "frida@kommun.se", 4711, T0)], source="webhook", tz=TZ)
    [grant] = conn.execute("SELECT id FROM grants").fetchall()
    conn.execute("UPDATE grants SET revoked_at = now(), revoked_reason = 'fel', revoked_by = 'test'")
    [row] = results(api, frida)
    assert (row["outcome"], row["grant_id"]) == ("revoked_before", grant["id"])


def test_unknown_employee_permission_and_export(conn, api, client, make_token):
    tree = add_tree(conn)
    add_course(conn, 4711)
    add_link(conn, 4711, tree["leaf"])
    anna = add_employee(conn, "anna@kommun.se")
    apply_results(conn, [record(f"r-{i}", "anna@kommun.se", 4711, T0 + timedelta(days=i))
                         for i in range(150)], source="webhook", tz=TZ)
    assert api.get("/api/v1/employees/999/results").status_code == 404
    assert api.get("/api/v1/employees/999/results?format=csv").status_code == 404
    token = make_token("settings-only", [SETTINGS])
    r = client.get(f"/api/v1/employees/{anna}/results", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403  # integrations, not settings
    body = api.get(f"/api/v1/employees/{anna}/results?format=csv").data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body, newline=""), delimiter=";"))
    assert rows[0] == ["result_id", "course_id", "course_name", "passed", "completed_at",
                       "competence_id", "competence_name", "outcome", "grant_id"]
    assert len(rows) == 151 and rows[-1][0] == "r-0" and rows[-1][7] == "granted"
    assert {r[7] for r in rows[1:-1]} == {"already_held"}

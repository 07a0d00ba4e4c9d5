"""Courses to link, the unmatched report and the audit log."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from tests.integration.api.conftest import add_course

pytestmark = pytest.mark.integration


def test_courses_lists_published_courses_only(conn, api):
    add_course(conn, 1, name="HLR vuxen")
    add_course(conn, 2, name="HLR barn", guide_type=18)
    add_course(conn, 3, name="HLR snabbguide", guide_type=5)  # a guide: never listed
    add_course(conn, 4, name="HLR gammal", status="unpublished")
    add_course(conn, 5, name="HLR borta", status="deleted")
    add_course(conn, 6, name="Brandskydd")
    r = api.get("/api/v1/courses")
    assert r.status_code == 200
    assert [(c["id"], c["guide_type"], c["status"]) for c in r.get_json()] == [
        (6, 14, "published"), (2, 18, "published"), (1, 14, "published")]
    assert [c["id"] for c in api.get("/api/v1/courses?q=hlr").get_json()] == [2, 1]
    assert [c["id"] for c in api.get("/api/v1/courses?q=VUX").get_json()] == [1]
    assert json.loads(api.get("/api/v1/courses?page_size=1&page=2").headers["X-Pagination"]) == {
        "total": 3, "total_pages": 3, "first_page": 1, "last_page": 3, "page": 2,
        "previous_page": 1, "next_page": 3}


def test_course_search_takes_wildcards_literally(conn, api):
    add_course(conn, 1, name="100% säker")
    add_course(conn, 2, name="1000 säkra")
    add_course(conn, 3, name="a_b")
    add_course(conn, 4, name="axb")
    add_course(conn, 5, name="back\\slash")
    assert [c["id"] for c in api.get("/api/v1/courses", query_string={"q": "100%"}).get_json()] == [1]
    assert [c["id"] for c in api.get("/api/v1/courses", query_string={"q": "a_b"}).get_json()] == [3]
    assert [c["id"] for c in api.get("/api/v1/courses", query_string={"q": "k\\s"}).get_json()] == [5]
    assert [c["id"] for c in api.get("/api/v1/courses", query_string={"q": "'; DROP TABLE courses; --"}).get_json()] == []
    assert api.get("/api/v1/courses", query_string={"q": "x\x00"}).status_code == 422


def _result(conn, rid, email, course_id, status="unmatched", passed=True, day=29):
    conn.execute(
        "INSERT INTO results (id, course_id, email, email_normalized, passed, completed_at, status, source)"
        " VALUES (%s, %s, %s, lower(trim(%s)), %s, %s, %s, 'webhook')",
        (rid, course_id, email, email, passed, datetime(2026, 11, day, 12, tzinfo=timezone.utc), status))


def test_unmatched_report_groups_by_email(conn, api):
    add_course(conn, 1)
    add_course(conn, 2)
    _result(conn, "r-1", "Nobody@Kommun.se", 2, day=20)
    _result(conn, "r-2", "nobody@kommun.se ", 1, day=25)
    _result(conn, "r-3", "nobody@kommun.se", 2, day=22)
    _result(conn, "r-4", "other@kommun.se", 1)
    _result(conn, "r-5", "granted@kommun.se", 1, status="granted")
    _result(conn, "r-6", "failed@kommun.se", 1, status="failed", passed=False)
    r = api.get("/api/v1/unmatched")
    assert r.status_code == 200
    rows = r.get_json()
    assert [(u["email"], u["results"], u["course_ids"]) for u in rows] == [
        ("nobody@kommun.se", 3, [1, 2]), ("other@kommun.se", 1, [1])]
    assert rows[0]["last_completed_at"].startswith("2026-11-25T")
    assert json.loads(r.headers["X-Pagination"])["total"] == 2
    assert [u["email"] for u in api.get("/api/v1/unmatched?email=OTHER@kommun.se").get_json()] == ["other@kommun.se"]


def test_audit_log_lists_every_change_newest_first(conn, api, make_token):
    add_course(conn, 4711)
    main = api.post("/api/v1/competences", json={"name": "Vård", "kind": "main_group"}).get_json()
    group = api.post("/api/v1/competences", json={"name": "Akut", "kind": "group", "parent_id": main["id"]}).get_json()
    leaf = api.post("/api/v1/competences", json={"name": "HLR", "kind": "competence", "parent_id": group["id"]}).get_json()
    link = api.post("/api/v1/links", json={"course_id": 4711, "competence_id": leaf["id"]}).get_json()
    api.delete(f"/api/v1/links/{link['id']}")
    r = api.get("/api/v1/audit?page_size=3")
    assert r.status_code == 200
    rows = r.get_json()
    assert [(a["actor"], a["action"], a["target"]) for a in rows] == [
        ("admin", "link.delete", f"link:{link['id']}"), ("admin", "link.create", f"link:{link['id']}"),
        ("admin", "competence.create", f"competence:{leaf['id']}")]
    assert rows[2]["before"] is None and rows[2]["after"]["name"] == "HLR"
    assert rows[0]["at"].endswith("+00:00") or "+" in rows[0]["at"]
    # the token creation itself is audited too (made by the test, like the CLI)
    assert json.loads(r.headers["X-Pagination"])["total"] == 6
    assert [a["action"] for a in api.get("/api/v1/audit?action=token.create").get_json()] == ["token.create"]
    assert [a["target"] for a in api.get(f"/api/v1/audit?target=link:{link['id']}").get_json()] == [
        f"link:{link['id']}"] * 2
    assert api.get("/api/v1/audit?actor=nobody").get_json() == []

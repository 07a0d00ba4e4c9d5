"""Links: create (checks, 409, outbox), list, get with course status and backfill, delete."""
from __future__ import annotations

import json

import pytest

from tests.integration.api.conftest import (add_course, add_employee, add_grant, add_link, add_tree,
                                            audit_rows)

pytestmark = pytest.mark.integration


def test_create_link_answers_201_starts_its_backfill_and_is_audited(conn, api):
    add_course(conn, 4711)
    tree = add_tree(conn)
    r = api.post("/api/v1/links", json={"course_id": 4711, "competence_id": tree["leaf"]})
    assert r.status_code == 201, r.get_json()
    link = r.get_json()
    assert link["course_id"] == 4711 and link["competence_id"] == tree["leaf"]
    assert link["course_status"] == "published"
    assert link["created_by"] == "admin"
    assert link["backfill"] == {"state": "pending", "total": 0, "processed": 0, "granted": 0,
                                "already_held": 0, "not_passed": 0, "not_published": 0,
                                "unmatched": 0, "errors": 0, "started_at": None,
                                "finished_at": None, "error": None}
    outbox = conn.execute("SELECT topic, payload, published_at FROM outbox").fetchall()
    assert outbox == [{"topic": "backfill", "payload": {"link_id": link["id"]}, "published_at": None}]
    [row] = audit_rows(conn, "link.create")
    assert (row["actor"], row["target"]) == ("admin", f"link:{link['id']}")
    assert row["after"] == {"course_id": 4711, "competence_id": tree["leaf"]}


@pytest.mark.parametrize("course, reason", [
    ({"guide_type": 5}, "guide"),
    ({"status": "unpublished"}, "not published"),
    ({"status": "deleted"}, "not published"),
])
def test_link_to_a_guide_or_an_unpublished_course_is_422(conn, api, course, reason):
    add_course(conn, 4711, **course)
    tree = add_tree(conn)
    r = api.post("/api/v1/links", json={"course_id": 4711, "competence_id": tree["leaf"]})
    assert r.status_code == 422
    body = r.get_json()
    assert body["code"] == 422 and reason in body["message"]
    assert "course_id" in body["errors"]
    assert conn.execute("SELECT count(*) AS n FROM links").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"] == 0


def test_link_to_an_unknown_course_or_a_non_leaf_is_422(conn, api):
    add_course(conn, 4711)
    tree = add_tree(conn)
    cases = [
        ({"course_id": 999, "competence_id": tree["leaf"]}, "not in the catalog", "course_id"),
        ({"course_id": 4711, "competence_id": tree["group"]}, "only competences (leaves)", "competence_id"),
        ({"course_id": 4711, "competence_id": tree["main"]}, "only competences (leaves)", "competence_id"),
        ({"course_id": 4711, "competence_id": 999}, "does not exist", "competence_id"),
    ]
    for body, reason, field in cases:
        r = api.post("/api/v1/links", json=body)
        assert r.status_code == 422, body
        assert reason in r.get_json()["message"] and field in r.get_json()["errors"]


def test_malformed_link_requests_are_422_in_the_error_shape(conn, api):
    for body in ({"course_id": 1}, {"course_id": "1", "competence_id": 1},
                 {"course_id": 1, "competence_id": 1, "extra": True}, {"course_id": 0, "competence_id": 1}):
        r = api.post("/api/v1/links", json=body)
        assert r.status_code == 422
        assert set(r.get_json()) == {"code", "message", "errors"}
        assert "json" in r.get_json()["errors"]
    r = api.post("/api/v1/links", data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and set(r.get_json()) == {"code", "message", "errors"}
    unknown = api.post("/api/v1/links", json={"course_id": 1, "competence_id": 1, "extra": True})
    assert unknown.get_json()["errors"]["json"] == {"extra": ["Unknown field."]}


def test_the_same_pair_twice_is_409(conn, api):
    add_course(conn, 4711)
    tree = add_tree(conn)
    first = api.post("/api/v1/links", json={"course_id": 4711, "competence_id": tree["leaf"]})
    again = api.post("/api/v1/links", json={"course_id": 4711, "competence_id": tree["leaf"]})
    assert again.status_code == 409
    assert again.get_json()["errors"] == {"link_id": [first.get_json()["id"]]}
    assert conn.execute("SELECT count(*) AS n FROM outbox").fetchone()["n"] == 1


def test_list_filters_and_paginates_links(conn, api):
    add_course(conn, 1)
    add_course(conn, 2, name="Brand")
    tree = add_tree(conn)
    other = conn.execute("INSERT INTO competences (parent_id, name, kind) VALUES (%s, 'Other', 'competence')"
                         " RETURNING id", (tree["group"],)).fetchone()["id"]
    ids = [add_link(conn, 1, tree["leaf"]), add_link(conn, 1, other), add_link(conn, 2, tree["leaf"])]
    r = api.get("/api/v1/links?page_size=2")
    assert r.status_code == 200
    assert [link["id"] for link in r.get_json()] == ids[:2]
    assert json.loads(r.headers["X-Pagination"]) == {
        "total": 3, "total_pages": 2, "first_page": 1, "last_page": 2, "page": 1, "next_page": 2}
    r = api.get("/api/v1/links?page_size=2&page=2")
    assert [link["id"] for link in r.get_json()] == ids[2:]
    assert [link["id"] for link in api.get("/api/v1/links?course_id=1").get_json()] == ids[:2]
    assert [link["id"] for link in api.get(f"/api/v1/links?competence_id={tree['leaf']}").get_json()] == [ids[0], ids[2]]
    assert [link["id"] for link in api.get(f"/api/v1/links?course_id=2&competence_id={other}").get_json()] == []
    assert api.get("/api/v1/links?page=99").get_json() == []
    assert api.get("/api/v1/links?page_size=101").status_code == 422
    assert api.get("/api/v1/links?course_id=abc").status_code == 422


def test_get_link_shows_course_status_and_backfill(conn, api):
    add_course(conn, 4711, status="unpublished")
    tree = add_tree(conn)
    link_id = add_link(conn, 4711, tree["leaf"])
    conn.execute("UPDATE links SET backfill_state = 'running', backfill_total = 10, backfill_processed = 4,"
                 " backfill_granted = 1, backfill_already_held = 2, backfill_unmatched = 1,"
                 " backfill_started_at = '2026-11-30T10:00:00Z'"
                 " WHERE id = %s", (link_id,))
    r = api.get(f"/api/v1/links/{link_id}")
    assert r.status_code == 200
    link = r.get_json()
    assert link["course_status"] == "unpublished"
    assert link["backfill"]["state"] == "running"
    assert {k: link["backfill"][k] for k in ("total", "processed", "granted", "already_held",
                                              "not_passed", "not_published", "unmatched", "errors")} == {
        "total": 10, "processed": 4, "granted": 1, "already_held": 2, "not_passed": 0,
        "not_published": 0, "unmatched": 1, "errors": 0}
    assert "failed" not in link["backfill"]
    assert link["backfill"]["started_at"].startswith("2026-11-30T")
    assert api.get("/api/v1/links/999").status_code == 404
    assert api.get("/api/v1/links/999").get_json()["message"] == "link 999 does not exist"


def test_deleting_a_link_keeps_its_grants(conn, api):
    add_course(conn, 4711)
    tree = add_tree(conn)
    link_id = add_link(conn, 4711, tree["leaf"])
    emp = add_employee(conn, "anna@kommun.se")
    grant_id = add_grant(conn, emp, tree["leaf"], link_id=link_id)
    r = api.delete(f"/api/v1/links/{link_id}")
    assert r.status_code == 204
    assert conn.execute("SELECT count(*) AS n FROM links").fetchone()["n"] == 0
    assert conn.execute("SELECT id FROM grants").fetchall() == [{"id": grant_id}]
    [row] = audit_rows(conn, "link.delete")
    assert row["before"]["course_id"] == 4711 and row["after"] is None
    assert api.delete(f"/api/v1/links/{link_id}").status_code == 404

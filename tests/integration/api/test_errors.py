"""Every error answer has one shape (docs/admin-api.md): {"code", "message", "errors"}."""
from __future__ import annotations

import json

import pytest
from psycopg_pool import ConnectionPool

pytestmark = pytest.mark.integration

SHAPE = {"code", "message", "errors"}


def test_framework_errors_have_the_shape(conn, api):
    cases = [
        (api._call("PUT", "/api/v1/links"), 405),
        (api.get("/api/v1/nothing-here"), 404),
        (api.get("/api/v1/links/0"), 404),  # ids start at 1
        (api.get("/api/v1/links/99999999999999999999"), 404),  # beyond bigint: no such id
        (api.get("/api/v1/links?page=0"), 422),
        (api.post("/api/v1/links", data="{", headers={"Content-Type": "application/json"}), 400),
        (api.post("/api/v1/links", data="[" * 30000 + "]" * 30000, headers={"Content-Type": "application/json"}), 400),
        (api.post("/api/v1/links", data="x" * 70000, headers={"Content-Type": "application/json"}), 413),
    ]
    for response, status in cases:
        assert response.status_code == status
        body = response.get_json()
        assert set(body) == SHAPE and body["code"] == status and isinstance(body["errors"], dict)
    assert "POST" in cases[0][0].headers["Allow"]


def test_validation_errors_name_the_field(conn, api):
    r = api.get("/api/v1/grants?employee_id=x")
    assert r.status_code == 422
    assert r.get_json()["errors"] == {"query": {"employee_id": ["Not a valid integer."]}}
    r = api.get("/api/v1/grants?employe_id=3")  # a misspelt filter does not list every grant
    assert r.status_code == 422
    assert r.get_json()["errors"] == {"query": {"employe_id": ["Unknown field."]}}
    r = api.get("/api/v1/grants?page_size=1000")
    assert r.status_code == 422
    assert list(r.get_json()["errors"]["query"]) == ["page_size"]
    r = api.post("/api/v1/competences", json={"name": "\ud800", "kind": "main_group"})
    assert r.get_json()["errors"] == {"json": {"name": ["must be valid Unicode text"]}}


def test_pages_beyond_the_end_are_empty(conn, api):
    r = api.get("/api/v1/links?page=1000000000000000000000000000000")
    assert r.status_code == 200 and r.get_json() == []
    assert json.loads(r.headers["X-Pagination"]) == {"total": 0, "total_pages": 0}


def test_an_unreachable_database_is_503(settings, database_url):
    from service.app import create_app

    # A real server that is not there: nothing listens on port 1.
    pool = ConnectionPool("postgresql://postgres@127.0.0.1:1/none", min_size=0, max_size=1, timeout=1,
                          open=True, reconnect_timeout=1)
    app = create_app(settings, pool=pool)
    try:
        r = app.test_client().get("/api/v1/courses", headers={"Authorization": "Bearer cbt_anything"})
        assert r.status_code == 503
        assert r.get_json() == {"code": 503, "message": "the database is unavailable; retry later", "errors": {}}
        assert r.headers["Retry-After"] == "5"
    finally:
        app.extensions["competence_bridge"].publisher.close()
        pool.close()

"""The API's edge: one error shape everywhere, UTF-8 JSON, security headers, stored dates that
Python cannot hold, revocations and link refusals that say why, and the docs served locally."""
from __future__ import annotations

import pytest

from tests.conftest import sign
from tests.integration.api.conftest import Api, add_course, add_employee, add_grant, add_tree

pytestmark = pytest.mark.integration

SHAPE = {"code", "message", "errors"}


def _shape(response, status):
    assert response.status_code == status, response.data[:300]
    body = response.get_json()
    assert body is not None, response.data[:300]
    assert {"code", "message"} <= set(body) <= SHAPE, body
    assert body["code"] == status and isinstance(body["message"], str) and body["message"]
    assert isinstance(body.get("errors", {}), dict)
    return body


def test_every_error_has_one_shape(conn, client, api, make_token):
    _shape(client.get("/nothing-here"), 404)
    _shape(client.get("/api/v1/links"), 401)  # no token
    _shape(Api(client, make_token("settings-only", ["administer_competence_settings"])).get("/api/v1/links"), 403)
    _shape(client.get("/webhooks/infocaption"), 405)
    _shape(client.delete("/healthz"), 405)
    _shape(api._call("PUT", "/api/v1/links"), 405)
    _shape(api.post("/api/v1/links", json={"course_id": "x"}), 422)
    _shape(api.post("/api/v1/links", data="x" * 70_000, headers={"Content-Type": "application/json"}), 413)
    _shape(client.post("/webhooks/infocaption", data="{}"), 401)
    raw = "x" * 70_000
    _shape(client.post("/webhooks/infocaption", data=raw, headers=sign(raw)), 413)


def test_an_unexpected_exception_is_a_500_in_the_shape(app, conn, api, monkeypatch):
    from service.catalog import links

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(links, "list_links", broken)
    body = _shape(api.get("/api/v1/links"), 500)
    assert "a bug" not in body["message"]  # internals are not shown


def test_json_is_utf8_not_ascii_escapes(conn, api):
    r = api.post("/api/v1/competences", json={"name": "Förste hjälpen", "kind": "main_group"})
    assert r.status_code == 201
    assert "Förste hjälpen".encode() in r.data and b"\\u00f6" not in r.data
    assert r.headers["Content-Type"].startswith("application/json")


def test_json_with_a_lone_surrogate_in_an_error_is_still_answered(conn, api):
    """An unknown field named by a lone surrogate is echoed in the errors: escaped, not a 500."""
    raw = '{"course_id": 1, "competence_id": 1, "\\ud800": 1}'
    r = api.post("/api/v1/links", data=raw, headers={"Content-Type": "application/json"})
    body = _shape(r, 422)
    assert list(body["errors"]["json"]) == ["\ud800"]


def test_security_headers_on_every_response(conn, client, api):
    for response in (client.get("/healthz"), client.get("/nothing"), api.get("/api/v1/links"),
                     client.post("/webhooks/infocaption", data="{}"), client.get("/api/openapi.json")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for response in (api.get("/api/v1/links"), client.get("/api/v1/links"),
                     api.get("/api/v1/nothing")):
        assert response.headers["Cache-Control"] == "no-store"


def test_far_future_and_ancient_stored_dates_list_without_500(conn, api):
    tree = add_tree(conn)
    add_course(conn)
    employee = add_employee(conn, "anna@kommun.se")
    grant = add_grant(conn, employee, tree["leaf"])
    # What an old version stored from a year-9999 completedAt: valid_to beyond Python's dates.
    conn.execute("UPDATE grants SET valid_from = '9999-12-31', valid_to = '9999-12-31'::date + 730 WHERE id = %s",
                 (grant,))
    conn.execute("INSERT INTO results (id, course_id, email, email_normalized, passed, completed_at, status, source)"
                 " VALUES ('r-far', 4711, 'bo@kommun.se', 'bo@kommun.se', true, 'infinity', 'unmatched', 'webhook'),"
                 " ('r-old', 4711, 'bo@kommun.se', 'bo@kommun.se', true, '0044-03-15 BC', 'unmatched', 'webhook')")
    r = api.get("/api/v1/grants")
    assert r.status_code == 200, r.data
    [row] = r.get_json()
    assert (row["valid_from"], row["valid_to"]) == ("9999-12-31", "9999-12-31")
    r = api.get("/api/v1/unmatched")
    assert r.status_code == 200, r.data
    assert r.get_json()[0]["last_completed_at"].startswith("9999-12-31")


def test_revoking_a_revoked_grant_is_409_and_an_unknown_one_404(conn, api):
    tree = add_tree(conn)
    add_course(conn)
    grant = add_grant(conn, add_employee(conn, "anna@kommun.se"), tree["leaf"])
    assert api.delete(f"/api/v1/grants/{grant}", json={"reason": "wrong person"}).status_code == 200
    body = _shape(api.delete(f"/api/v1/grants/{grant}", json={"reason": "again"}), 409)
    assert "revoked already" in body["message"]
    assert body["errors"]["revoked_by"] == ["admin"]
    _shape(api.delete(f"/api/v1/grants/{grant + 1000}", json={"reason": "x"}), 404)


@pytest.mark.parametrize("course, field_reason", [
    (None, "not in the catalog"),
    ({"guide_type": 5}, "a guide"),
    ({"status": "unpublished"}, "not published"),
])
def test_link_refusals_say_why(conn, api, course, field_reason):
    tree = add_tree(conn)
    if course is not None:
        add_course(conn, 4711, name="Brandskydd", **course)
    body = _shape(api.post("/api/v1/links", json={"course_id": 4711, "competence_id": tree["leaf"]}), 422)
    assert field_reason in body["message"] and field_reason in body["errors"]["course_id"][0]
    if course is not None:
        assert "Brandskydd" in body["message"]


def test_swagger_ui_is_served_by_the_app_itself(client):
    r = client.get("/api/docs")
    assert r.status_code == 200 and b"swagger-ui" in r.data
    assert b"//cdn" not in r.data and b"unpkg" not in r.data and b"jsdelivr" not in r.data
    page = r.data.decode()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        start = page.index(asset)
        url = page[page.rindex('"', 0, start) + 1:page.index('"', start)]
        assert url.startswith("/"), url
        asset_response = client.get(url)
        assert asset_response.status_code == 200 and len(asset_response.data) > 10_000


def test_the_webhook_endpoint_is_in_the_openapi_document(client):
    spec = client.get("/api/openapi.json").get_json()
    op = spec["paths"]["/webhooks/infocaption"]["post"]
    assert {"202", "400", "401", "413", "503"} <= set(op["responses"])
    headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert op["security"] == []  # signed, not a bearer token
    assert "application/json" in op["requestBody"]["content"]

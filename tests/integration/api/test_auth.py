"""401 and 403 for every admin API route, generated from the app's route table."""
from __future__ import annotations

import re

import pytest
from flask import Flask
from flask_smorest import Blueprint

from service.access import tokens
from service.access import auth
from tests.integration.api.conftest import BOTH

pytestmark = pytest.mark.integration


def calls(app):
    """One (method, url) per method of every /api/v1 rule, path ids filled with 1."""
    found = []
    for rule in auth.protected_rules(app):
        url = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "1", rule.rule)
        for method in sorted(rule.methods - {"OPTIONS"}):
            found.append((method, url, rule.endpoint))
    return found


def test_route_table_has_every_section_5_resource(app):
    urls = {url for _, url, _ in calls(app)}
    for path in ("courses", "competences", "competences/1", "links", "links/1", "employees",
                 "employees/1", "grants", "grants/1", "unmatched", "audit", "ops/queues",
                 "ops/dead-letters/replay"):
        assert f"/api/v1/{path}" in urls


def test_every_route_needs_a_token_and_its_permission(app, client, make_token, conn):
    every_tenant = make_token("every", BOTH)
    platform = tokens.create(conn, "platform", [], platform=True)  # docs/tenants.md
    checked = 0
    for method, url, endpoint in calls(app):
        needed = auth.permission_for(endpoint)  # KeyError: a route without a declared permission
        assert needed in (*tokens.PERMISSIONS, tokens.PLATFORM)
        if needed == tokens.PLATFORM:  # only a platform token, never a tenant's
            every, lacking = platform, every_tenant
        else:  # a tenant's token with the permission; the platform token never
            every = every_tenant
            lacking = make_token(f"lacks-{checked}", [p for p in BOTH if p != needed])
            assert client.open(url, method=method, headers={"Authorization": f"Bearer {platform}"},
                               **({"json": {}} if method in ("POST", "PATCH", "DELETE") else {})
                               ).status_code == 403, (method, url)
        body = {"json": {}} if method in ("POST", "PATCH", "DELETE") else {}

        anonymous = client.open(url, method=method, **body)
        assert anonymous.status_code == 401, (method, url)
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        if method != "HEAD":
            assert anonymous.get_json() == {"code": 401, "message": "a valid bearer token is required",
                                            "errors": {}}
        for bad in ("Bearer cbt_not-a-token", "Bearer ", "Basic dXNlcjpwYXNz", every):
            assert client.open(url, method=method, headers={"Authorization": bad}, **body).status_code == 401

        forbidden = client.open(url, method=method, headers={"Authorization": f"Bearer {lacking}"}, **body)
        assert forbidden.status_code == 403, (method, url)
        if method != "HEAD":
            assert forbidden.get_json()["errors"] == {"permission": [needed]}
            assert forbidden.get_json()["code"] == 403

        allowed = client.open(url, method=method, headers={"Authorization": f"Bearer {every}"}, **body)
        assert allowed.status_code not in (401, 403), (method, url)
        checked += 1
    assert checked >= 19


def test_permissions_follow_the_contract(app):
    by_path = {(m, u): auth.permission_for(e) for m, u, e in calls(app)}
    assert by_path[("POST", "/api/v1/links")] == auth.INTEGRATIONS
    assert by_path[("DELETE", "/api/v1/grants/1")] == auth.INTEGRATIONS
    assert by_path[("POST", "/api/v1/ops/dead-letters/replay")] == auth.INTEGRATIONS
    assert by_path[("GET", "/api/v1/ops/queues")] == auth.INTEGRATIONS
    assert by_path[("POST", "/api/v1/competences")] == auth.SETTINGS
    assert by_path[("PATCH", "/api/v1/employees/1")] == auth.SETTINGS


def test_a_revoked_token_is_refused(conn, client, make_token):
    token = make_token("ops")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/courses", headers=headers).status_code == 200
    assert tokens.revoke(conn, "ops") == 1
    assert client.get("/api/v1/courses", headers=headers).status_code == 401


def test_a_route_without_a_declared_permission_stops_the_app():
    app = Flask(__name__)
    blp = Blueprint("forgotten", __name__, url_prefix="/api/v1")
    blp.add_url_rule("/forgotten", view_func=lambda: "")
    app.register_blueprint(blp)
    with pytest.raises(RuntimeError, match="/api/v1/forgotten"):
        auth.check_declared(app)


def test_openapi_document_declares_bearer_auth(client):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["components"]["securitySchemes"][auth.SCHEME_NAME] == {
        **auth.SECURITY_SCHEME}
    assert doc["security"] == [{auth.SCHEME_NAME: []}]
    for path, operations in doc["paths"].items():
        if path == "/webhooks/infocaption":  # signed, not a bearer token (test_edge_api.py)
            assert operations["post"]["security"] == []
            continue
        assert path.startswith("/api/v1/")
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert {"401", "403"} <= set(operation["responses"]), (method, path)

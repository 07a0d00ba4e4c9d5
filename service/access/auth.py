"""Bearer tokens and permissions of the admin API (docs/admin-api.md; docs/rules.md, rule 8).

The permission every /api/v1 route needs is declared here, in one table keyed by blueprint;
`init_api` refuses to start when a route's blueprint is missing from it, and a test walks the
route table to prove that each route answers 401 without a token and 403 without its permission.
"""
from __future__ import annotations

import logging

from flask import Flask, g, request
from flask_smorest import abort

from service.access import tokens
from service.access.tokens import INTEGRATIONS, SETTINGS
from service.platform.api import API_PREFIX
from service.platform.web import services

log = logging.getLogger(__name__)

SCHEME_NAME = "bearerAuth"
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "A token made by `competence-bridge create-token`; it carries permissions.",
}

# The one place that says which permission each part of the API needs.
PERMISSION_BY_BLUEPRINT = {
    "courses": INTEGRATIONS,
    "links": INTEGRATIONS,
    "grants": INTEGRATIONS,
    "unmatched": INTEGRATIONS,
    "audit": INTEGRATIONS,
    "operations": INTEGRATIONS,
    "rejected": INTEGRATIONS,
    "subscriptions": INTEGRATIONS,
    "employee_results": INTEGRATIONS,
    "reports": INTEGRATIONS,
    "competences": SETTINGS,
    "employees": SETTINGS,
}


def permission_for(endpoint: str) -> str:
    """Return the permission an endpoint (`blueprint.view`) needs; KeyError when undeclared."""
    return PERMISSION_BY_BLUEPRINT[endpoint.split(".", 1)[0]]


def protected_rules(app: Flask):
    """Every URL rule of the admin API."""
    return [r for r in app.url_map.iter_rules() if r.rule.startswith(API_PREFIX)]


def check_declared(app: Flask) -> None:
    """Refuse to start when a /api/v1 route has no declared permission."""
    missing = sorted(r.rule for r in protected_rules(app) if r.endpoint.split(".", 1)[0]
                     not in PERMISSION_BY_BLUEPRINT)
    if missing:
        raise RuntimeError(f"admin API routes without a declared permission: {', '.join(missing)}")


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate() -> None:
    """Before every /api/v1 request: 401 without a valid token, 403 without the permission."""
    rule = request.url_rule
    if rule is None or not rule.rule.startswith(API_PREFIX):
        return
    token = _bearer()
    found = None
    if token is not None:
        with services().pool.connection() as conn:
            found = tokens.lookup(conn, token)
    if found is None:
        abort(401, message="a valid bearer token is required",
              headers={"WWW-Authenticate": 'Bearer realm="competence-bridge"'})
    needed = permission_for(request.endpoint)
    if needed not in (found["permissions"] or []):
        log.info("token %s lacks %s for %s", found["name"], needed, request.endpoint)
        abort(403, message=f"this token lacks the permission {needed}",
              errors={"permission": [needed]})
    g.token = found

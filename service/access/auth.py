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
from service.access.tokens import INTEGRATIONS, PLATFORM, SETTINGS
from service.platform import tenancy
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
    "platform": PLATFORM,
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
    g.token = found
    if found["platform"] or needed == PLATFORM:
        # A platform token reaches the platform's endpoints only, and only it does
        # (docs/tenants.md, "Platform tokens"); it is bound to no tenant.
        if not (found["platform"] and needed == PLATFORM):
            abort(403, message="this endpoint is for "
                  + ("tenant tokens" if found["platform"] else "platform tokens") + " only",
                  errors={"permission": [needed]})
        return
    # Everything the request reads or writes from here on is this tenant's (docs/tenants.md).
    tenancy.bind(found["tenant_id"])
    if found["tenant_id"] != tenancy.DEFAULT_ID:  # `default`'s is TIME_ZONE
        g.tenant_time_zone = found["time_zone"]
    if needed not in (found["permissions"] or []):
        log.info("token %s lacks %s for %s", found["name"], needed, request.endpoint)
        abort(403, message=f"this token lacks the permission {needed}",
              errors={"permission": [needed]})

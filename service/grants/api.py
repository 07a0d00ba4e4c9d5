"""Grants: list them with evidence and validity; revoke one with a reason (rule 5)."""
from __future__ import annotations

from marshmallow import fields, validate

from service.platform.api import (Id, Query, Strict, Text, actor, blueprint, errors, paged, paginate,
                                transaction, window)
from service.grants import grants as grants_grants
from service.platform.export import ExportQuery, exportable
from service.platform.web import time_zone

blp = blueprint(
    "grants",
    "Competences registered on employees, one period each, current and past: evidence (course, "
    "result, webhook, link), validity and status today (`active`, `upcoming`, `expired`, "
    "`revoked`). A revoked grant stays in the history; it is never re-created from the same "
    "result, and only a passed result completed after the revocation grants the competence again.",
)

SOURCES = ("webhook", "backfill", "reconciliation", "employee_update", "manual")


class GrantQuery(ExportQuery):
    employee_id = Id(query=True)
    competence_id = Id(query=True)
    status = fields.String(validate=validate.OneOf(grants_grants.STATUSES),
                           metadata={"description": "only grants with this status today (TIME_ZONE)"})


class GrantSchema(Strict):
    id = fields.Integer(required=True)
    employee_id = fields.Integer(required=True)
    employee_email = fields.String(required=True)
    employee_name = fields.String(required=True, allow_none=True,
                                  metadata={"description": "first and last name; null when unknown"})
    competence_id = fields.Integer(required=True)
    competence_name = fields.String(required=True)
    valid_from = fields.Date(required=True, metadata={"description": "the first day of the period (TIME_ZONE)"})
    valid_to = fields.Date(required=True, allow_none=True, metadata={"description": "the last day; null = never expires"})
    status = fields.String(required=True, validate=validate.OneOf(grants_grants.STATUSES),
                           metadata={"description": "on today's date in TIME_ZONE"})
    source = fields.String(required=True, validate=validate.OneOf(SOURCES))
    course_id = fields.Integer(required=True, allow_none=True)
    result_id = fields.String(required=True, allow_none=True)
    webhook_id = fields.String(required=True, allow_none=True)
    link_id = fields.Integer(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    revoked_at = fields.DateTime(required=True, allow_none=True)
    revoked_reason = fields.String(required=True, allow_none=True)
    revoked_by = fields.String(required=True, allow_none=True)


class RevokeSchema(Strict):
    reason = Text(required=True, min_length=1, max_length=2000,
                  metadata={"description": "why; kept in the audit log (must not be blank)"})


@blp.route("/grants")
@errors(blp)
@blp.arguments(GrantQuery, location="query", as_kwargs=True)
@exportable(blp, GrantSchema, "grants")
@blp.response(200, GrantSchema(many=True))
@paginate(blp)
@transaction
def list_grants(conn, employee_id=None, competence_id=None, status=None, pagination_parameters=None):
    """List grants, current and past, optionally of one employee, one competence, one status."""
    limit, offset = window(pagination_parameters)
    page = grants_grants.list_grants(conn, employee_id=employee_id, competence_id=competence_id,
                                     status=status, tz=time_zone(),
                                     limit=limit, offset=offset)
    return paged(page, pagination_parameters)


@blp.route("/grants/<id:grant_id>", methods=["DELETE"])
@errors(blp, 404, 409, 422)
@blp.arguments(RevokeSchema)
@blp.response(200, GrantSchema)
@transaction
def revoke_grant(conn, data, grant_id):
    """Revoke one grant (body `{"reason": "..."}`); answers the grant, now revoked."""
    return grants_grants.revoke_grant(conn, grant_id, data["reason"], actor=actor(),
                                      tz=time_zone())


def register(api) -> None:
    api.register_blueprint(blp)

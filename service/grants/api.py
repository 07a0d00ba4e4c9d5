"""Grants: list them with evidence and validity; revoke one with a reason (rule 5)."""
from __future__ import annotations

from marshmallow import fields, validate

from service.platform.api import (Id, Query, Strict, Text, actor, blueprint, errors, paged, paginate,
                                transaction, window)
from service.grants import grants as grants_grants
from service.platform.export import ExportQuery, exportable
blp = blueprint(
    "grants",
    "Competences registered on employees, with their evidence (course, result, webhook, link) and "
    "validity. A revoked grant is never re-created from the same result; only a later passed "
    "result grants it again.",
)

SOURCES = ("webhook", "backfill", "reconciliation", "employee_update", "manual")


class GrantQuery(ExportQuery):
    employee_id = Id(query=True)
    competence_id = Id(query=True)


class GrantSchema(Strict):
    id = fields.Integer(required=True)
    employee_id = fields.Integer(required=True)
    competence_id = fields.Integer(required=True)
    valid_from = fields.Date(required=True, metadata={"description": "the completion date (TIME_ZONE)"})
    valid_to = fields.Date(required=True, allow_none=True, metadata={"description": "null = never expires"})
    source = fields.String(required=True, validate=validate.OneOf(SOURCES))
    course_id = fields.Integer(required=True, allow_none=True)
    result_id = fields.String(required=True, allow_none=True)
    webhook_id = fields.String(required=True, allow_none=True)
    link_id = fields.Integer(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class RevokeSchema(Strict):
    reason = Text(required=True, min_length=1, max_length=2000,
                  metadata={"description": "why; kept in the audit log (must not be blank)"})


class RevocationSchema(Strict):
    id = fields.Integer(required=True)
    grant_id = fields.Integer(required=True)
    employee_id = fields.Integer(required=True)
    competence_id = fields.Integer(required=True)
    result_id = fields.String(required=True, allow_none=True)
    valid_from = fields.Date(required=True)
    valid_to = fields.Date(required=True, allow_none=True)
    reason = fields.String(required=True)
    revoked_by = fields.String(required=True)
    revoked_at = fields.DateTime(required=True)


@blp.route("/grants")
@errors(blp)
@blp.arguments(GrantQuery, location="query", as_kwargs=True)
@exportable(blp, GrantSchema, "grants")
@blp.response(200, GrantSchema(many=True))
@paginate(blp)
@transaction
def list_grants(conn, employee_id=None, competence_id=None, pagination_parameters=None):
    """List grants, optionally of one employee and/or one competence."""
    limit, offset = window(pagination_parameters)
    page = grants_grants.list_grants(conn, employee_id=employee_id, competence_id=competence_id,
                             limit=limit, offset=offset)
    return paged(page, pagination_parameters)


@blp.route("/grants/<id:grant_id>", methods=["DELETE"])
@errors(blp, 404, 422)
@blp.arguments(RevokeSchema)
@blp.response(200, RevocationSchema)
@transaction
def revoke_grant(conn, data, grant_id):
    """Revoke one grant (body `{"reason": "..."}`); answers the revocation kept."""
    return grants_grants.revoke_grant(conn, grant_id, data["reason"], actor=actor())


def register(api) -> None:
    api.register_blueprint(blp)

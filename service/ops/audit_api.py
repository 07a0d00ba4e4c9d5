"""The audit log: every change, who made it (token name), before and after (rule 8)."""
from __future__ import annotations

from marshmallow import fields

from service.platform.api import Query, Strict, Text, blueprint, errors, paged, paginate, transaction, window
from service.ops import audit as ops_audit
blp = blueprint("audit", "Every change made through the admin API or the CLI, newest first.")


class AuditQuery(Query):
    actor = Text(max_length=200)
    action = Text(max_length=200, metadata={"description": "e.g. link.create, grant.revoke"})
    target = Text(max_length=200, metadata={"description": "e.g. link:7, competence:3"})


class AuditSchema(Strict):
    id = fields.Integer(required=True)
    actor = fields.String(required=True, metadata={"description": "the token's name, or cli"})
    action = fields.String(required=True)
    target = fields.String(required=True)
    before = fields.Raw(required=True, allow_none=True, metadata={"description": "JSON, or null"})
    after = fields.Raw(required=True, allow_none=True, metadata={"description": "JSON, or null"})
    at = fields.DateTime(required=True)


@blp.route("/audit")
@errors(blp)
@blp.arguments(AuditQuery, location="query", as_kwargs=True)
@blp.response(200, AuditSchema(many=True))
@paginate(blp)
@transaction
def audit_log(conn, actor=None, action=None, target=None, pagination_parameters=None):
    """List audit rows, newest first, optionally by actor, action and/or target."""
    limit, offset = window(pagination_parameters)
    page = ops_audit.audit_rows(conn, actor=actor, action=action, target=target, limit=limit, offset=offset)
    return paged(page, pagination_parameters)


def register(api) -> None:
    api.register_blueprint(blp)

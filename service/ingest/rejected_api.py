"""Rejected webhooks, kept for ops: why each was refused and what was sent (docs/webhooks.md)."""
from __future__ import annotations

from marshmallow import fields, validate

from service.platform.api import Query, Strict, blueprint, errors, paged, paginate, transaction, window
from service.ingest import rejected as ingest_rejected
blp = blueprint(
    "rejected",
    "Webhooks answered 4xx, newest first, with the reason and the field errors. Signed ones are "
    "all kept; unsigned ones (401, 413) only as a sample of a few a minute (every one is counted "
    "in cb_webhooks_total). Kept REJECTED_RETENTION_DAYS days.",
)


class RejectedQuery(Query):
    status = fields.Integer(validate=validate.Range(min=400, max=499),
                            metadata={"description": "only this answer (400, 401, 413 ...)"})


class RejectedSchema(Strict):
    id = fields.Integer(required=True)
    received_at = fields.DateTime(required=True)
    webhook_id = fields.String(required=True, allow_none=True,
                               metadata={"description": "at most 200 characters, escaped"})
    status = fields.Integer(required=True, metadata={"description": "the answer given"})
    reason = fields.String(required=True)
    errors = fields.Dict(required=True, allow_none=True, metadata={"description": "field errors"})
    headers = fields.Dict(required=True, metadata={
        "description": "the webhook-id, webhook-timestamp, content and user-agent headers "
                       "(never the signature)"})
    body = fields.String(required=True, allow_none=True, metadata={
        "description": "the body as UTF-8 text, bytes that are not UTF-8 as \\xNN escapes; "
                       "null when it was not kept (unsigned or too large)"})
    body_bytes = fields.Integer(required=True, allow_none=True)


@blp.route("/ops/rejected-webhooks")
@errors(blp)
@blp.arguments(RejectedQuery, location="query", as_kwargs=True)
@blp.response(200, RejectedSchema(many=True))
@paginate(blp)
@transaction
def rejected_webhooks(conn, status=None, pagination_parameters=None):
    """List rejected webhooks, newest first, optionally of one status."""
    limit, offset = window(pagination_parameters)
    return paged(ingest_rejected.list_rejected_webhooks(conn, status=status, limit=limit, offset=offset),
                 pagination_parameters)


def register(api) -> None:
    api.register_blueprint(blp)

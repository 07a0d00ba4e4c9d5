"""Links between courses and competences; creating one starts its backfill (rule 4)."""
from __future__ import annotations

from marshmallow import fields, validate

from service.platform.api import (Id, Query, Strict, actor, blueprint, errors, paged, paginate,
                                transaction, window)
from service.catalog import links as catalog_links
blp = blueprint(
    "links",
    "Which courses grant which competences. A new link must join a published course "
    "(guideType 14 or 18) of the catalog to a competence (a leaf of the tree); its backfill then "
    "grants everyone who passed the course. Deleting a link keeps the grants it produced.",
)

BACKFILL_STATES = ("pending", "running", "done", "failed")


class LinkQuery(Query):
    course_id = Id(query=True)
    competence_id = Id(query=True)


class LinkCreateSchema(Strict):
    course_id = Id(required=True, metadata={"description": "InfoCaption's course id"})
    competence_id = Id(required=True)


class BackfillSchema(Strict):
    """A backfill's progress; `processed` = granted + already_held + not_passed + unmatched + errors."""

    state = fields.String(required=True, validate=validate.OneOf(BACKFILL_STATES))
    total = fields.Integer(required=True, metadata={"description": "results expected"})
    processed = fields.Integer(required=True, metadata={
        "description": "results done: granted + already_held + not_passed + unmatched + errors"})
    granted = fields.Integer(required=True, metadata={
        "description": "passed results that created the grant (grants created)"})
    already_held = fields.Integer(required=True, metadata={
        "description": "passed results that created nothing: the employee held the competence "
                       "(rule 3), or a grant of it was revoked for this result (rule 5)"})
    not_passed = fields.Integer(required=True, metadata={
        "description": "results that do not count as a pass: not passed, or completed while "
                       "the course was not published (rule 6; those are also in not_published)"})
    not_published = fields.Integer(required=True, metadata={
        "description": "of not_passed: passed while the course was not published"})
    unmatched = fields.Integer(required=True, metadata={
        "description": "passed results whose email matches no employee (the unmatched report)"})
    errors = fields.Integer(required=True, metadata={
        "description": "records InfoCaption served that could not be read or stored; kept for "
                       "ops as dead letters of the queue infocaption-api"})
    started_at = fields.DateTime(required=True, allow_none=True)
    finished_at = fields.DateTime(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True, metadata={"description": "why it failed"})


class LinkSchema(Strict):
    id = fields.Integer(required=True)
    course_id = fields.Integer(required=True)
    course_name = fields.String(required=True)
    course_status = fields.String(required=True, validate=validate.OneOf(("published", "unpublished", "deleted")))
    competence_id = fields.Integer(required=True)
    competence_name = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    created_by = fields.String(required=True, metadata={"description": "the token that made it"})
    backfill = fields.Nested(BackfillSchema, required=True)


@blp.route("/links")
@errors(blp)
@blp.arguments(LinkQuery, location="query", as_kwargs=True)
@blp.response(200, LinkSchema(many=True))
@paginate(blp)
@transaction
def list_links(conn, course_id=None, competence_id=None, pagination_parameters=None):
    """List links, optionally of one course and/or one competence."""
    limit, offset = window(pagination_parameters)
    page = catalog_links.list_links(conn, course_id=course_id, competence_id=competence_id,
                            limit=limit, offset=offset)
    return paged(page, pagination_parameters)


@blp.route("/links", methods=["POST"])
@errors(blp, 409, 422)
@blp.arguments(LinkCreateSchema)
@blp.response(201, LinkSchema)
@transaction
def create_link(conn, data):
    """Link a course to a competence and start its backfill."""
    return catalog_links.create_link(conn, data["course_id"], data["competence_id"], actor=actor())


@blp.route("/links/<id:link_id>")
@errors(blp, 404)
@blp.response(200, LinkSchema)
@transaction
def get_link(conn, link_id):
    """One link with its course's status and its backfill's progress."""
    return catalog_links.get_link(conn, link_id)


@blp.route("/links/<id:link_id>", methods=["DELETE"])
@errors(blp, 404)
@blp.response(204)
@transaction
def delete_link(conn, link_id):
    """Delete a link; the grants it produced stay."""
    catalog_links.delete_link(conn, link_id, actor=actor())


def register(api) -> None:
    api.register_blueprint(blp)

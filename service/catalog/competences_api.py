"""The competence tree: main group -> group -> competence (leaf). Needs the settings permission."""
from __future__ import annotations

from marshmallow import fields, validate

from service.platform.api import (Id, Query, Strict, Text, actor, blueprint, errors, paged,
                                paginate, transaction, window)
from service.catalog import competences as catalog_competences
blp = blueprint(
    "competences",
    "The competence tree. A main group has no parent, a group's parent is a main group, a "
    "competence's parent is a group; only competences (leaves) are linked and granted, and only "
    "they have `default_valid_days` and `renewal_window_days`. A node that still has children "
    "cannot be deleted (409); deleting a competence deletes its grants and links.",
)

MAX_VALID_DAYS = 36600  # 100 years: a date plus this always stays a date

_valid_days = dict(
    allow_none=True, strict=True, validate=validate.Range(min=1, max=MAX_VALID_DAYS),
    metadata={"description": "days a grant stays valid; null = never expires"},
)

_window_days = dict(
    allow_none=True, strict=True, validate=validate.Range(min=0, max=MAX_VALID_DAYS),
    metadata={"description": "a pass this many days or fewer before a grant ends starts the next "
                             "grant the day after it ends; null = a new grant only after expiry"},
)


class CompetenceQuery(Query):
    parent_id = Id(query=True, metadata={"description": "only the children of this node"})
    kind = fields.String(validate=validate.OneOf(catalog_competences.KINDS))


class CompetenceSchema(Strict):
    id = fields.Integer(required=True)
    parent_id = fields.Integer(required=True, allow_none=True)
    name = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(catalog_competences.KINDS))
    default_valid_days = fields.Integer(required=True, allow_none=True)
    renewal_window_days = fields.Integer(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class CompetenceCreateSchema(Strict):
    name = Text(required=True, min_length=1, max_length=200)
    kind = fields.String(required=True, validate=validate.OneOf(catalog_competences.KINDS))
    parent_id = Id(allow_none=True, load_default=None)
    default_valid_days = fields.Integer(load_default=None, **_valid_days)
    renewal_window_days = fields.Integer(load_default=None, **_window_days)


class CompetenceUpdateSchema(Strict):
    name = Text(min_length=1, max_length=200)
    parent_id = Id(allow_none=True, metadata={"description": "move the node (same kind rule)"})
    default_valid_days = fields.Integer(**_valid_days)
    renewal_window_days = fields.Integer(**_window_days)


class CompetenceDeletedSchema(Strict):
    deleted_grants = fields.Integer(required=True)
    deleted_links = fields.Integer(required=True)


@blp.route("/competences")
@errors(blp)
@blp.arguments(CompetenceQuery, location="query", as_kwargs=True)
@blp.response(200, CompetenceSchema(many=True))
@paginate(blp)
@transaction
def list_competences(conn, parent_id=None, kind=None, pagination_parameters=None):
    """List the tree depth first (main group, its groups, each with its competences)."""
    limit, offset = window(pagination_parameters)
    page = catalog_competences.list_competences(conn, parent_id=parent_id, kind=kind, limit=limit, offset=offset)
    return paged(page, pagination_parameters)


@blp.route("/competences", methods=["POST"])
@errors(blp, 422)
@blp.arguments(CompetenceCreateSchema)
@blp.response(201, CompetenceSchema)
@transaction
def create_competence(conn, data):
    """Add a node to the tree."""
    return catalog_competences.create_competence(conn, data, actor=actor())


@blp.route("/competences/<id:competence_id>")
@errors(blp, 404)
@blp.response(200, CompetenceSchema)
@transaction
def get_competence(conn, competence_id):
    """One node of the tree."""
    return catalog_competences.get_competence(conn, competence_id)


@blp.route("/competences/<id:competence_id>", methods=["PATCH"])
@errors(blp, 404, 422)
@blp.arguments(CompetenceUpdateSchema)
@blp.response(200, CompetenceSchema)
@transaction
def update_competence(conn, changes, competence_id):
    """Rename, move (`parent_id`) or set validity and renewal of a node."""
    return catalog_competences.update_competence(conn, competence_id, changes, actor=actor())


@blp.route("/competences/<id:competence_id>", methods=["DELETE"])
@errors(blp, 404, 409)
@blp.response(200, CompetenceDeletedSchema)
@transaction
def delete_competence(conn, competence_id):
    """Delete a node without children; a competence's grants and links go with it."""
    return catalog_competences.delete_competence(conn, competence_id, actor=actor())


def register(api) -> None:
    api.register_blueprint(blp)

"""GET /api/v1/courses: the published courses an admin can link (never guides)."""
from __future__ import annotations

from marshmallow import fields

from service.platform.api import Query, Strict, Text, blueprint, errors, paged, paginate, transaction, window
from service.catalog import courses as catalog_courses
blp = blueprint("courses", "The course catalog: published InfoCaption courses (guideType 14 or 18).")


class CourseQuery(Query):
    q = Text(max_length=200, metadata={"description": "part of the name (case-insensitive)"})


class CourseSchema(Strict):
    id = fields.Integer(required=True, metadata={"description": "InfoCaption's guide id"})
    name = fields.String(required=True)
    guide_type = fields.Integer(required=True, metadata={"description": "14 (Kurs) or 18 (FysiskKurs)"})
    status = fields.String(required=True, metadata={"description": "always `published` here"})
    last_seen_at = fields.DateTime(required=True, allow_none=True,
                                   metadata={"description": "when InfoCaption last showed it"})


@blp.route("/courses")
@errors(blp)
@blp.arguments(CourseQuery, location="query", as_kwargs=True)
@blp.response(200, CourseSchema(many=True))
@paginate(blp)
@transaction
def list_courses(conn, q=None, pagination_parameters=None):
    """List published courses, optionally those whose name contains `q`."""
    limit, offset = window(pagination_parameters)
    return paged(catalog_courses.list_courses(conn, q=q, limit=limit, offset=offset), pagination_parameters)


def register(api) -> None:
    api.register_blueprint(blp)

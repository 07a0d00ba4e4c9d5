"""The unmatched report: kept results with no matching employee, grouped by email (rule 2)."""
from __future__ import annotations

from marshmallow import fields

from service.platform.api import Strict, Text, blueprint, errors, paged, paginate, transaction, window
from service.people import unmatched as people_unmatched
from service.platform.export import ExportQuery, exportable
blp = blueprint(
    "unmatched",
    "Passed results kept because no employee has their email: why a person is missing a "
    "competence. Creating the employee, or correcting an email, grants them.",
)


class UnmatchedQuery(ExportQuery):
    email = Text(max_length=320, metadata={"description": "one email (normalised)"})


class UnmatchedSchema(Strict):
    email = fields.String(required=True, metadata={"description": "the normalised email"})
    results = fields.Integer(required=True, metadata={"description": "how many results are kept"})
    course_ids = fields.List(fields.Integer(), required=True)
    last_completed_at = fields.DateTime(required=True)


@blp.route("/unmatched")
@errors(blp)
@blp.arguments(UnmatchedQuery, location="query", as_kwargs=True)
@exportable(blp, UnmatchedSchema, "unmatched")
@blp.response(200, UnmatchedSchema(many=True))
@paginate(blp)
@transaction
def unmatched_report(conn, email=None, pagination_parameters=None):
    """List kept unmatched results by email, with counts and courses."""
    limit, offset = window(pagination_parameters)
    return paged(people_unmatched.unmatched_report(conn, email=email, limit=limit, offset=offset),
                 pagination_parameters)


def register(api) -> None:
    api.register_blueprint(blp)

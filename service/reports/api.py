"""Why per employee and the follow-up reports, as JSON pages or whole files (docs/admin-api.md)."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from marshmallow import fields, validate

from service.platform.api import Id, Strict, blueprint, errors, paged, paginate, transaction, window
from service.platform.export import ExportQuery, exportable
from service.platform.web import time_zone
from service.reports import reports

OUTCOMES = ("granted", "already_held", "not_passed", "course_not_published", "revoked_before",
            "not_linked", "pending")
MAX_WITHIN_DAYS = 3660

results_blp = blueprint(
    "employee_results",
    "Why an employee has, or has not, got a competence: every result kept for the employee's "
    "email with what it did for each competence its course grants.",
)
reports_blp = blueprint(
    "reports",
    "Follow-up reports: grants about to expire, and how well each competence is covered. Every "
    "report can also be had whole as CSV or XLSX (`?format=`).",
)


def _today():
    return datetime.now(ZoneInfo(time_zone())).date()


class EmployeeResultsQuery(ExportQuery):
    pass


class EmployeeResultSchema(Strict):
    result_id = fields.String(required=True)
    course_id = fields.Integer(required=True)
    course_name = fields.String(required=True, allow_none=True)
    passed = fields.Boolean(required=True)
    completed_at = fields.DateTime(required=True)
    competence_id = fields.Integer(required=True, allow_none=True,
                                   metadata={"description": "null: the course is linked to nothing"})
    competence_name = fields.String(required=True, allow_none=True)
    outcome = fields.String(required=True, validate=validate.OneOf(OUTCOMES))
    grant_id = fields.Integer(required=True, allow_none=True,
                              metadata={"description": "the grant this result made (also when it "
                                                       "was revoked later)"})


class ExpiringQuery(ExportQuery):
    within_days = fields.Integer(load_default=90, validate=validate.Range(min=0, max=MAX_WITHIN_DAYS),
                                 metadata={"description": "the window: today .. today + N days"})
    competence_id = Id(query=True)


class ExpiringSchema(Strict):
    grant_id = fields.Integer(required=True)
    employee_id = fields.Integer(required=True)
    employee_email = fields.String(required=True)
    employee_name = fields.String(required=True, allow_none=True)
    competence_id = fields.Integer(required=True)
    competence_name = fields.String(required=True)
    valid_from = fields.Date(required=True)
    valid_to = fields.Date(required=True)


class CoverageQuery(ExportQuery):
    pass


class CoverageSchema(Strict):
    competence_id = fields.Integer(required=True)
    competence_name = fields.String(required=True)
    active = fields.Integer(required=True, metadata={"description": "employees holding it today"})
    expiring = fields.Integer(required=True, metadata={
        "description": "of those, employees whose latest grant ends within 90 days"})
    expired_not_renewed = fields.Integer(required=True, metadata={
        "description": "employees whose latest grant has expired (none active or upcoming)"})


@results_blp.route("/employees/<id:employee_id>/results")
@errors(results_blp, 404)
@results_blp.arguments(EmployeeResultsQuery, location="query", as_kwargs=True)
@exportable(results_blp, EmployeeResultSchema, "results")
@results_blp.response(200, EmployeeResultSchema(many=True))
@paginate(results_blp)
@transaction
def employee_results(conn, employee_id, pagination_parameters=None):
    """List every result kept for the employee's email, with its outcome and grant."""
    limit, offset = window(pagination_parameters)
    return paged(reports.employee_results(conn, employee_id, limit=limit, offset=offset),
                 pagination_parameters)


@reports_blp.route("/reports/expiring")
@errors(reports_blp)
@reports_blp.arguments(ExpiringQuery, location="query", as_kwargs=True)
@exportable(reports_blp, ExpiringSchema, "expiring")
@reports_blp.response(200, ExpiringSchema(many=True))
@paginate(reports_blp)
@transaction
def expiring_report(conn, within_days=90, competence_id=None, pagination_parameters=None):
    """List active grants ending within the next N days (not renewed), soonest first."""
    limit, offset = window(pagination_parameters)
    return paged(reports.expiring(conn, today=_today(), within_days=within_days,
                                  competence_id=competence_id, limit=limit, offset=offset),
                 pagination_parameters)


@reports_blp.route("/reports/coverage")
@errors(reports_blp)
@reports_blp.arguments(CoverageQuery, location="query", as_kwargs=True)
@exportable(reports_blp, CoverageSchema, "coverage")
@reports_blp.response(200, CoverageSchema(many=True))
@paginate(reports_blp)
@transaction
def coverage_report(conn, pagination_parameters=None):
    """List, per competence, employees active, expiring within 90 days, expired not renewed."""
    limit, offset = window(pagination_parameters)
    return paged(reports.coverage(conn, today=_today(), limit=limit, offset=offset),
                 pagination_parameters)


def register(api) -> None:
    api.register_blueprint(results_blp)
    api.register_blueprint(reports_blp)

"""Employees: list, create one or import many, correct an email (rule 2). Settings permission."""
from __future__ import annotations

from flask import request
from flask_smorest import abort
from marshmallow import ValidationError, fields

from service.platform.api import (Query, Strict, Text, actor, blueprint, errors, paged,
                                paginate, transaction, window)
from service.people import employees as people_employees
from service.platform.web import time_zone
from service.people.email import email_shape_problem, unmatchable_reason
blp = blueprint(
    "employees",
    "Employees of the competence system, matched to results by email (trimmed, case-insensitive, "
    "Unicode NFC). Creating an employee, or correcting an email, grants the kept unmatched "
    "results of that email. Two employees never share a normalised email (409).",
)

MAX_IMPORT = 5000
MAX_IMPORT_BYTES = 4 * 1024 * 1024  # the app's 64 KiB limit is for webhooks, not for imports


def _email(**kwargs):
    field = Text(min_length=3, max_length=320, metadata={"format": "email"}, **kwargs)
    field.validators.append(email_shape)
    return field


def email_shape(value: str) -> None:
    """Refuse what cannot be an employee's email: not an address, or one that matches nobody."""
    problem = email_shape_problem(value)
    if problem:
        raise ValidationError(problem)
    reason = unmatchable_reason(value)
    if reason:
        # Rule 2 (docs of service/people/email.py): no result would ever match this employee.
        raise ValidationError(f"this address can match no result: {reason}")


class EmployeeQuery(Query):
    email = Text(max_length=320, metadata={"description": "the employee with this email (normalised)"})
    q = Text(max_length=200, metadata={"description": "part of the name or email (case-insensitive); "
                                                      "sorted by name, the Swedish way"})


class EmployeeCreateSchema(Strict):
    email = _email(required=True)
    first_name = Text(max_length=200, allow_none=True, load_default=None)
    last_name = Text(max_length=200, allow_none=True, load_default=None)


class EmployeeUpdateSchema(Strict):
    email = _email()
    first_name = Text(max_length=200, allow_none=True)
    last_name = Text(max_length=200, allow_none=True)


class EmployeeSchema(Strict):
    id = fields.Integer(required=True)
    email = fields.String(required=True)
    first_name = fields.String(required=True, allow_none=True)
    last_name = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


def _one_or_many(name: str) -> dict:
    ref = {"$ref": f"#/components/schemas/{name}"}
    return {"oneOf": [ref, {"type": "array", "items": ref, "minItems": 1, "maxItems": MAX_IMPORT}]}


@blp.route("/employees")
@errors(blp)
@blp.arguments(EmployeeQuery, location="query", as_kwargs=True)
@blp.response(200, EmployeeSchema(many=True))
@paginate(blp)
@transaction
def list_employees(conn, email=None, q=None, pagination_parameters=None):
    """List employees, optionally the one with an email, or those whose name or email holds `q`."""
    limit, offset = window(pagination_parameters)
    if q is not None and email is None:
        return paged(people_employees.search_employees(conn, q=q, limit=limit, offset=offset),
                     pagination_parameters)
    return paged(people_employees.list_employees(conn, email=email, limit=limit, offset=offset),
                 pagination_parameters)


@blp.route("/employees", methods=["POST"])
@errors(blp, 400, 409, 413, 422)
@blp.doc(
    requestBody={"required": True, "content": {"application/json": {"schema": _one_or_many("EmployeeCreate")}}},
    responses={"201": {
        "description": "the employee created (an object), or the employees imported (a list, in "
                       "the order given); all or nothing",
        "content": {"application/json": {"schema": _one_or_many("Employee")}},
    }},
)
def create_employees():
    """Create one employee (an object) or import many (a list) in one transaction."""
    request.max_content_length = MAX_IMPORT_BYTES
    body = request.get_json(silent=True)
    if body is None:
        abort(400, message="the body must be JSON: an employee object or a list of them",
              errors={"json": ["not valid JSON"]})
    many = isinstance(body, list)
    if many and not 1 <= len(body) <= MAX_IMPORT:
        abort(422, message=f"an import holds 1 to {MAX_IMPORT} employees",
              errors={"json": {"_schema": [f"1 to {MAX_IMPORT} items"]}})
    try:
        items = EmployeeCreateSchema(many=many).load(body)
    except ValidationError as err:
        abort(422, errors={"json": err.messages})
    created = _create(items if many else [items])
    dumped = EmployeeSchema(many=True).dump(created)
    return (dumped if many else dumped[0]), 201


@transaction
def _create(conn, items):
    return people_employees.create_employees(conn, items, actor=actor(), tz=time_zone())


@blp.route("/employees/<id:employee_id>", methods=["PATCH"])
@errors(blp, 404, 409, 422)
@blp.arguments(EmployeeUpdateSchema)
@blp.response(200, EmployeeSchema)
@transaction
def update_employee(conn, changes, employee_id):
    """Change an employee's email or name; a new email grants its kept unmatched results."""
    return people_employees.update_employee(conn, employee_id, changes, actor=actor(),
                                 tz=time_zone())


def register(api) -> None:
    # The import's request body is parsed by hand (object or list); name its schema in the doc.
    api.spec.components.schema("EmployeeCreate", schema=EmployeeCreateSchema)
    api.register_blueprint(blp)

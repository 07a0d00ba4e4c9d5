"""What every admin API blueprint shares: strict schemas, fields, errors, paging, transactions."""
from __future__ import annotations

import http
import logging
from pathlib import Path
from contextlib import contextmanager
from datetime import date, datetime, timezone
from functools import wraps

import marshmallow as ma
import psycopg
import flask_swagger_ui
from flask import request
from flask.json.provider import DefaultJSONProvider
from flask_smorest import Api, Blueprint, abort
from werkzeug.exceptions import HTTPException
from marshmallow import fields, validate
from psycopg.types.datetime import DateLoader, TimestamptzLoader
from psycopg_pool import PoolTimeout
from werkzeug.routing import IntegerConverter

from service.platform import errors as platform_errors

from service.platform import paging as platform_paging
from service.platform.web import RETRY_AFTER_S, services
log = logging.getLogger(__name__)

BIGINT_MAX = 2**63 - 1
# Answers every API operation may give besides its own (documented on each operation).
COMMON_ERRORS = (401, 403)
PAGE_SIZE, MAX_PAGE_SIZE = 20, 100


# --- fields -------------------------------------------------------------------------------------

def _storable_text(value: str) -> None:
    # PostgreSQL text holds neither NUL nor lone surrogates; refuse them here, not with a 500.
    if "\x00" in value:
        raise ma.ValidationError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ma.ValidationError("must be valid Unicode text") from None


def Text(*, max_length: int = 1000, min_length: int = 0, **kwargs) -> fields.String:
    """A string field whose value PostgreSQL can store."""
    rules = [validate.Length(min=min_length, max=max_length), _storable_text]
    return fields.String(validate=rules, **kwargs)


def Id(*, query: bool = False, **kwargs) -> fields.Integer:
    """A database id (bigint): strict in JSON bodies, text in query strings."""
    return fields.Integer(strict=not query, validate=validate.Range(min=1, max=BIGINT_MAX), **kwargs)


def Bool(**kwargs) -> fields.Boolean:
    """A JSON boolean, nothing else ("yes", 1 … are refused)."""
    return fields.Boolean(truthy={True}, falsy={False}, **kwargs)


class IdConverter(IntegerConverter):
    """URL converter for ids: 1 … 2**63-1, so a path id always fits a bigint."""

    def __init__(self, map, **kwargs):
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", BIGINT_MAX)
        super().__init__(map, **kwargs)


def id_converter_schema(converter) -> dict:
    return {"type": "integer", "format": "int64", "minimum": converter.min, "maximum": converter.max}


# --- schemas ------------------------------------------------------------------------------------

class Strict(ma.Schema):
    """Admin requests: unknown fields are refused (422), never silently dropped."""

    class Meta:
        unknown = ma.RAISE


class Query(ma.Schema):
    """Query strings: the filters and the pagination arguments; anything else is refused.

    `page` and `page_size` are read by flask-smorest's pagination from the same query string,
    so they pass here; a misspelt filter (`?employe_id=`) is a 422, not a silently unfiltered list.
    """

    PAGINATION = frozenset({"page", "page_size"})

    class Meta:
        unknown = ma.EXCLUDE

    @ma.pre_load
    def _refuse_unknown(self, data, **kwargs):
        known = {field.data_key or name for name, field in self.fields.items()} | self.PAGINATION
        unknown = sorted(set(data.keys()) - known)
        if unknown:
            raise ma.ValidationError({name: ["Unknown field."] for name in unknown})
        return data


class ErrorSchema(ma.Schema):
    """Every error answer: `{"code": <status>, "message": "...", "errors": {...}}`."""

    code = fields.Integer(required=True, metadata={"description": "the HTTP status"})
    message = fields.String(required=True, metadata={"description": "what went wrong"})
    errors = fields.Dict(required=True, metadata={"description": "details by field (may be empty)"})


# --- blueprints and views -----------------------------------------------------------------------

def blueprint(name: str, description: str) -> Blueprint:
    """A blueprint of the admin API under /api/v1 (its permission is set in service.access.auth)."""
    blp = Blueprint(name, __name__, url_prefix="/api/v1", description=description)
    blp.register_error_handler(RecursionError, _too_deep)
    blp.register_error_handler(psycopg.OperationalError, _unavailable)
    blp.register_error_handler(PoolTimeout, _unavailable)
    return blp


def _error(code: int, message: str, headers: dict | None = None):
    return {"code": code, "message": message, "errors": {}}, code, headers or {}


def _too_deep(exc: RecursionError):
    # json.loads recurses per nesting level; a body nested thousands deep is the client's fault.
    return _error(400, "the JSON body is nested too deeply")


def _unavailable(exc: Exception):
    log.warning("database unavailable: %s", exc.__class__.__name__)
    return _error(503, "the database is unavailable; retry later", {"Retry-After": str(RETRY_AFTER_S)})


def errors(blp: Blueprint, *codes: int):
    """Document the error answers of an operation (401 and 403 always)."""
    def decorator(func):
        for code in sorted({*COMMON_ERRORS, *codes}, reverse=True):
            func = blp.alt_response(code, response=http.HTTPStatus(code).name)(func)
        return func
    return decorator


def paginate(blp: Blueprint):
    """`?page=&page_size=` with X-Pagination; the view gets `pagination_parameters`."""
    return blp.paginate(page_size=PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)


def window(pagination_parameters) -> tuple[int, int]:
    """Return (limit, offset) for a page, the offset capped to what SQL can take."""
    return pagination_parameters.page_size, min(pagination_parameters.first_item, BIGINT_MAX)


def paged(page: platform_paging.Page, pagination_parameters) -> list[dict]:
    pagination_parameters.item_count = page.total
    return page.items


def _before_year_1(data) -> bool:
    text = bytes(data)
    return text.startswith(b"-") or text.endswith(b"BC")


class ClampedDateLoader(DateLoader):
    """A date Python cannot hold (after 9999, BC, infinity) reads as date.max or date.min."""

    def load(self, data):
        try:
            return super().load(data)
        except psycopg.DataError:
            return date.min if _before_year_1(data) else date.max


class ClampedTimestamptzLoader(TimestamptzLoader):
    """A timestamptz Python cannot hold reads as the first or last instant it can."""

    def load(self, data):
        try:
            return super().load(data)
        except psycopg.DataError:
            moment = datetime.min if _before_year_1(data) else datetime.max
            return moment.replace(tzinfo=timezone.utc)


def readable_dates(conn: psycopg.Connection) -> None:
    """Read out-of-range dates on this connection clamped, so a list never fails on one row.

    PostgreSQL holds dates up to year 294276 and infinity; Python's stop at 9999. A row kept
    from an absurd input (a year-9999 completion plus a validity) must still be listed.
    """
    conn.adapters.register_loader("date", ClampedDateLoader)
    conn.adapters.register_loader("timestamptz", ClampedTimestamptzLoader)


@contextmanager
def refusals():
    """Turn the domain's refusals into 404, 409 and 422 answers."""
    try:
        yield
    except platform_errors.NotFound as exc:
        abort(404, message=exc.message, errors=exc.errors)
    except platform_errors.Conflict as exc:
        abort(409, message=exc.message, errors=exc.errors)
    except platform_errors.Invalid as exc:
        abort(422, message=exc.message, errors=exc.errors)


def transaction(view):
    """Run the view with `conn` in one transaction of the app's pool; refusals become 4xx."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        with refusals():
            with services().pool.connection() as conn:
                readable_dates(conn)
                return view(conn, *args, **kwargs)
    return wrapper


def actor() -> str:
    """The name of the token that made the request (the audit log's actor)."""
    from flask import g

    return g.token["name"]


# --- the API object: one error shape, UTF-8 JSON, headers of every answer -------------------

API_PREFIX = "/api/v1/"
# Swagger UI's files as a package ships them: /api/docs needs nothing from another host.
SWAGGER_UI_ASSETS = Path(flask_swagger_ui.__file__).parent / "dist"
SWAGGER_UI_ASSETS_URL = "/api/docs/assets"


class Utf8JSONProvider(DefaultJSONProvider):
    """JSON answers in UTF-8 ("Förste hjälpen", not "F\\u00f6rste").

    A string that is not valid Unicode (a lone surrogate echoed back in a field error) cannot be
    written as UTF-8; that one answer is written with ASCII escapes instead.
    """

    ensure_ascii = False

    def dumps(self, obj, **kwargs) -> str:
        text = super().dumps(obj, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            kwargs["ensure_ascii"] = True
            text = super().dumps(obj, **kwargs)
        return text


def response_headers(response):
    """Set what every answer carries: no MIME sniffing; API answers are never cached."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.path.startswith(API_PREFIX):
        response.headers["Cache-Control"] = "no-store"
    return response


class AdminApi(Api):
    """flask-smorest's Api with one error shape for every error answer (docs/admin-api.md)."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):
        """Answer `{"code", "message", "errors"}` for 4xx/5xx, validation errors included."""
        data = getattr(error, "data", None) or {}
        errors = data.get("errors", data.get("messages"))
        if not isinstance(errors, dict):
            errors = {} if errors is None else {"_request": errors}
        message = data.get("message")
        if message is None:
            message = "the request does not fit the schema" if errors else (error.description or error.name)
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        headers.update(data.get("headers") or {})
        return {"code": error.code, "message": message, "errors": errors}, error.code, headers

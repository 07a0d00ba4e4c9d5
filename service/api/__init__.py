"""The admin and ops JSON API (docs/admin-api.md), built with flask-smorest."""
from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Flask, request
from flask.json.provider import DefaultJSONProvider
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from service.api import auth
from service.api.common import ErrorSchema, IdConverter, id_converter_schema

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
    if request.path.startswith(auth.API_PREFIX):
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


def init_api(app: Flask) -> Api:
    """Attach the API and its OpenAPI document (served at /api/openapi.json)."""
    app.config.setdefault("API_TITLE", "Competence Bridge")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("API_SPEC_OPTIONS", {"security": [{auth.SCHEME_NAME: []}]})
    app.config.setdefault("OPENAPI_SWAGGER_UI_PATH", "docs")
    app.config.setdefault("OPENAPI_SWAGGER_UI_URL", SWAGGER_UI_ASSETS_URL + "/")
    app.json = Utf8JSONProvider(app)
    app.after_request(response_headers)
    app.register_blueprint(Blueprint("swagger_ui_assets", __name__, static_folder=SWAGGER_UI_ASSETS,
                                     static_url_path=SWAGGER_UI_ASSETS_URL))
    app.url_map.converters["id"] = IdConverter
    api = AdminApi(app)
    api.spec.components.security_scheme(auth.SCHEME_NAME, auth.SECURITY_SCHEME)
    api.register_converter(IdConverter, id_converter_schema)
    from service import webhooks

    webhooks.document(api.spec, app)

    from service.api import (audit, competences, courses, employees, grants, links, ops, rejected,
                             unmatched)

    for module in (courses, competences, links, employees, grants, unmatched, audit, ops, rejected):
        module.register(api)
    auth.check_declared(app)
    app.before_request(auth.authenticate)
    return api

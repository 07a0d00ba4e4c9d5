"""The admin and ops JSON API (CONTRACT section 5), built with flask-smorest."""
from __future__ import annotations

from flask import Flask
from flask_smorest import Api


def init_api(app: Flask) -> Api:
    """Attach the API and its OpenAPI document (served at /api/openapi.json)."""
    app.config.setdefault("API_TITLE", "Competence Bridge")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    api = Api(app)
    return api

"""The Flask application factory: webhooks, the admin API and health endpoints, put together."""
from __future__ import annotations

import logging

from flask import Blueprint, Flask
from flask_smorest import Api
from psycopg_pool import ConnectionPool

from service.access import auth
from service.catalog import competences_api, courses_api, links_api
from service.grants import api as grants_api
from service.ingest import rejected_api, webhooks
from service.ops import audit_api, health, queues_api
from service.people import employees_api, unmatched_api
from service.platform.api import (SWAGGER_UI_ASSETS, SWAGGER_UI_ASSETS_URL, AdminApi, IdConverter,
                                  Utf8JSONProvider, id_converter_schema, response_headers)

from service.platform import config as config_mod
from service.platform import db, tenancy
from service.platform.messaging import Publisher
from service.platform.observability import configure_logging, init_sentry
from service.platform.web import MAX_WEBHOOK_BYTES, Services

log = logging.getLogger(__name__)


def create_app(
    settings: config_mod.Settings | None = None,
    pool: ConnectionPool | None = None,
    publisher: Publisher | None = None,
) -> Flask:
    """Build the app; under gunicorn this runs in each worker, after fork."""
    settings = settings or config_mod.load()
    configure_logging()
    init_sentry(settings.sentry_dsn, "web", settings.environment)
    if pool is None:
        pool = db.make_pool(db.database_url(settings), max_size=8, name="web",
                           time_zone=settings.time_zone)
        pool.wait(timeout=30)
    publisher = publisher or Publisher(settings, pool)

    app = Flask(__name__)
    # Flask answers 413 itself for larger bodies, chunked or not; the webhook view logs it.
    app.config["MAX_CONTENT_LENGTH"] = MAX_WEBHOOK_BYTES
    app.extensions["competence_bridge"] = Services(settings, pool, publisher)
    # A request's tenant is bound by whatever proves it (a token, a webhook URL) and forgotten
    # at its end, so that a thread's next request starts with none (docs/tenants.md).
    app.before_request(tenancy.unbind)
    app.teardown_request(tenancy.unbind)

    app.register_blueprint(webhooks.bp)
    init_api(app)
    app.register_blueprint(health.bp)
    from service.console import views as console

    console.init_app(app)  # the admin console at / (docs/console.md)
    return app


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
    from service.ingest import webhooks

    webhooks.document(api.spec, app)

    from service.ops import audit_api as audit, queues_api as ops
    from service.catalog import competences_api as competences, courses_api as courses, links_api as links
    from service.people import employees_api as employees, unmatched_api as unmatched
    from service.grants import api as grants
    from service.ingest import rejected_api as rejected
    from service.events import api as subscriptions
    from service.reports import api as reports
    from service.tenants import platform_api as platform

    for module in (courses, competences, links, employees, grants, unmatched, audit, ops, rejected,
                   subscriptions, reports, platform):
        module.register(api)
    auth.check_declared(app)
    app.before_request(auth.authenticate)
    return api

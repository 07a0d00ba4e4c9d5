"""The Flask application factory: webhooks, the admin API and health endpoints."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, current_app
from psycopg_pool import ConnectionPool

from service import config as config_mod
from service import db
from service.messaging import Publisher
from service.observability import configure_logging, init_sentry

log = logging.getLogger(__name__)

MAX_WEBHOOK_BYTES = 64 * 1024


@dataclass
class Services:
    """What a request needs from the process: settings, the pool and the publisher."""

    settings: config_mod.Settings
    pool: ConnectionPool
    publisher: Publisher


def services() -> Services:
    return current_app.extensions["competence_bridge"]


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
        pool = db.make_pool(db.database_url(settings), max_size=8, name="web")
        pool.wait(timeout=30)
    publisher = publisher or Publisher(settings, pool)

    app = Flask(__name__)
    # Flask answers 413 itself for larger bodies, chunked or not; the webhook view logs it.
    app.config["MAX_CONTENT_LENGTH"] = MAX_WEBHOOK_BYTES
    app.extensions["competence_bridge"] = Services(settings, pool, publisher)

    from service.webhooks import bp as webhooks_bp

    app.register_blueprint(webhooks_bp)

    from service.api import init_api

    init_api(app)

    from service.ops import bp as ops_bp

    app.register_blueprint(ops_bp)

    return app

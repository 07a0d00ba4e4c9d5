"""What a request needs from its process (settings, pool, publisher), reachable from any view.

The accessor lives here, below every view, so that views never import the app factory.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g
from psycopg_pool import ConnectionPool

from service.platform import config as config_mod
from service.platform.messaging import Publisher

MAX_WEBHOOK_BYTES = 64 * 1024
RETRY_AFTER_S = 5  # what a 503 asks the caller to wait (Retry-After)


@dataclass
class Services:
    """What a request needs from the process: settings, the pool and the publisher."""

    settings: config_mod.Settings
    pool: ConnectionPool
    publisher: Publisher


def services() -> Services:
    return current_app.extensions["competence_bridge"]


def time_zone() -> str:
    """The time zone of the request's tenant (its day: grant dates, statuses, reports); the
    tenant `default`'s is TIME_ZONE (docs/tenants.md)."""
    return g.get("tenant_time_zone") or services().settings.time_zone

"""GET /healthz, /readyz and /metrics (docs/admin-api.md): what the platform and Prometheus ask.

- `/healthz`: the process answers (liveness); it checks nothing else, so a database outage
  never makes an orchestrator restart healthy web processes.
- `/readyz`: the database answers, the broker accepts a connection and every migration shipped
  with the code is applied; 200, or 503 naming what failed. Each check has a short timeout.
- `/metrics`: the counters of this web process (all gunicorn workers, through prometheus
  multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set) and the state gauges read from
  PostgreSQL and the queue at scrape time (service.ops.state.StateCollector).
"""
from __future__ import annotations

import logging

import psycopg
from flask import Blueprint, Response, current_app, jsonify

from service.platform import db
from service.platform.web import services
from service.platform import migrate as migrations
from service.platform.observability import scrub_text
from service.platform import config

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)

CHECK_TIMEOUT_S = 2.0


@bp.get("/healthz")
def healthz():
    """Answer while the process is alive."""
    return jsonify(status="ok")


def _error(exc: BaseException) -> str:
    return scrub_text(f"{exc.__class__.__name__}: {exc}".strip())[:300]


def check_database(conninfo: str, timeout_s: float = CHECK_TIMEOUT_S) -> tuple[dict, dict]:
    """Open a connection of its own (never wait on the pool) and read the applied migrations."""
    try:
        # libpq counts connect_timeout in whole seconds, 2 at least.
        with psycopg.connect(conninfo, connect_timeout=max(2, int(timeout_s))) as conn:
            conn.execute(db.q("obs_statement_timeout"), {"timeout": f"{int(timeout_s * 1000)}ms"})
            done = migrations.applied(conn)
            conn.rollback()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return ({"ok": False, "error": _error(exc)},
                {"ok": False, "error": "not checked: the database is unreachable"})
    pending = [f"{m.version:04d}_{m.name}" for m in migrations.available() if m.version not in done]
    changed = [f"{m.version:04d}_{m.name}" for m in migrations.available()
               if m.version in done and not m.applied_as(done[m.version])]
    migrations_check = {"ok": not pending and not changed, "pending": pending}
    if changed:
        migrations_check["changed"] = changed
    return {"ok": True}, migrations_check


def check_broker(settings, database_url: str, timeout_s: float = CHECK_TIMEOUT_S) -> dict:
    """Reach the queue (RabbitMQ, or the embedded queue's table) with a short timeout."""
    from service.platform import messaging

    try:
        messaging.check(settings, database_url, timeout_s)
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return {"ok": False, "error": _error(exc)}


@bp.get("/readyz")
def readyz():
    """200 when the database and the broker answer and migrations are applied; else 503."""
    svc = services()
    database, migrations_check = check_database(svc.pool.conninfo)
    checks = {"database": database, "broker": check_broker(svc.settings, svc.pool.conninfo),
              "migrations": migrations_check}
    failed = [name for name in ("database", "broker") if not checks[name]["ok"]]
    if database["ok"] and not migrations_check["ok"]:
        failed.append("migrations")
    if not failed:
        return jsonify(status="ready", checks=checks)
    log.warning("not ready: %s", ", ".join(failed))
    response = jsonify(
        code=503,
        message=f"not ready: {', '.join(failed)}",
        errors={name: checks[name].get("error") or checks[name] for name in failed},
        status="not ready",
        failed=failed,
        checks=checks,
    )
    response.status_code = 503
    return response


def multiprocess_dir() -> str | None:
    """The directory of prometheus multiprocess mode, when this process runs in it."""
    return config.prometheus_multiproc_dir()


def _state_registry():
    from prometheus_client import CollectorRegistry

    from service.ops.state import StateCollector

    ext = current_app.extensions
    registry = ext.get("competence_bridge_state_registry")
    if registry is None:
        svc = services()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StateCollector(svc.settings, svc.pool))
        ext["competence_bridge_state_registry"] = registry
    return registry


def render_metrics(state_registry=None) -> bytes:
    """The text exposition: this process's (or every gunicorn worker's) metrics, then the state."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    output = generate_latest(registry)
    if state_registry is not None:
        output += generate_latest(state_registry)
    return output


@bp.get("/metrics")
def metrics():
    """Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(render_metrics(_state_registry()), mimetype=None,
                    headers={"Content-Type": CONTENT_TYPE_LATEST})

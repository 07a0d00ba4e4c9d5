"""gunicorn settings of `competence-bridge web`: Prometheus multiprocess mode and JSON logs.

Loaded by the gunicorn master (`--config python:service.platform.gunicorn_conf`) before it imports
anything that imports prometheus_client, so every worker it forks writes its counters to
PROMETHEUS_MULTIPROC_DIR and `/metrics` on any worker reports the sum of all of them.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_CREATED_MARK = "COMPETENCE_BRIDGE_METRICS_DIR_CREATED"


def prepare_metrics_dir() -> Path:
    """Use PROMETHEUS_MULTIPROC_DIR, or make a fresh directory and set it, before any import."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if not path:
        path = tempfile.mkdtemp(prefix="competence-bridge-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        os.environ[_CREATED_MARK] = path
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


METRICS_DIR = prepare_metrics_dir()


def on_starting(server):
    """Forget the counts of a previous run: files left in a reused directory would add up."""
    for stale in METRICS_DIR.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server, worker):
    """Mark a gunicorn worker dead so its live gauges leave the sum (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(METRICS_DIR))


def on_exit(server):
    created = os.environ.get(_CREATED_MARK)
    if created and Path(created) == METRICS_DIR:
        shutil.rmtree(created, ignore_errors=True)


# Request limits: a webhook has a dozen headers, none long (the webhook-id is at most 200
# characters); the API's query strings are short. A slow client is the proxy's to absorb
# (deploy/README.md, "Slow clients"): gthread holds a thread while a request arrives.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
keepalive = 5

# No access line for each accepted webhook (see AccessLogger).
logger_class = "service.platform.observability.AccessLogger"

# gunicorn's own lines (start, stop, access log) in the same JSON shape as the service's.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "service.platform.observability.JsonFormatter"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
    },
}

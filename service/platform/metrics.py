"""Prometheus metrics shared by web, worker and scheduler.

Two kinds, exposed in two places (deploy/README.md, "Metrics"):

- Counters and histograms below are incremented by the process that does the work. The web
  process (gunicorn, several workers) runs in prometheus_client's multiprocess mode and
  aggregates them on `/metrics`; the worker and the scheduler each serve their own on
  `METRICS_PORT` (`serve_metrics`).
- State gauges (queue depth and consumers, results by status, unmatched, dead letters pending,
  backfill progress) are read from the queue and PostgreSQL at scrape time by
  `service.ops.state.StateCollector` in the web process, so they are right whichever process
  changed the state.
"""
from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram

from service.platform.config import DEFAULT_METRICS_PORTS  # noqa: F401 - part of this module's interface

log = logging.getLogger(__name__)

# `tenant` is the tenant's slug ("-" before one is known: an unknown tenant's slug never
# becomes a label, so that a caller cannot make series): one series per tenant and value.
WEBHOOKS = Counter(
    "cb_webhooks_total", "Webhooks received, by outcome, event type and tenant",
    ["outcome", "type", "tenant"]
)
EVENTS = Counter(
    "cb_events_processed_total", "Events processed by the worker, by outcome", ["outcome"]
)
GRANTS = Counter("cb_grants_created_total", "Grants created, by source and tenant",
                 ["source", "tenant"])
DEAD_LETTERS = Counter("cb_dead_letters_total", "Events dead-lettered, by queue", ["queue"])
LAG = Histogram(
    "cb_processing_lag_seconds",
    "From the webhook's timestamp to the commit of its effect, by tenant", ["tenant"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RECONCILE_RUNS = Counter("cb_reconcile_runs_total", "Reconciliation runs, by outcome", ["outcome"])
RECONCILE_REPAIRS = Counter(
    "cb_reconcile_repairs_total", "Results a reconciliation found new or changed that had changed "
    "more than 5 minutes before the run (lost webhooks, not ones still queued)"
)
INFOCAPTION_BAD_RECORDS = Counter(
    "cb_infocaption_bad_records_total", "Records from the InfoCaption API that could not be used"
)

# What the schema allows (0001_initial.sql); each is reported, 0 when absent, so that an alert
# or a dashboard never sees a series appear out of nothing.
def serve_metrics(port: int | None, addr: str = "0.0.0.0"):
    """Serve this process's counters on `port` in a daemon thread; return the server or None.

    A port already taken is logged and skipped: the process's work matters more than its
    metrics.
    """
    if port is None:
        log.info("metrics port disabled (METRICS_PORT=0)")
        return None
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(port, addr=addr)
    except OSError as exc:
        log.warning("metrics port %s unavailable (%s); serving no metrics", port, exc.strerror or exc)
        return None
    log.info("serving metrics on %s:%s", addr, server.server_port)
    return server

# Outgoing events (docs/events.md, "Delivery"): attempts by channel (webhook, mail) and outcome
# (delivered, retry, failed), and how long each took.
DELIVERIES = Counter(
    "cb_event_deliveries_total", "Outgoing event deliveries attempted, by channel and outcome",
    ["channel", "outcome"]
)
DELIVERY_SECONDS = Histogram(
    "cb_event_delivery_seconds", "How long one delivery attempt took, by channel", ["channel"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
)

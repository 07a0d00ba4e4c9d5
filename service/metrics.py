"""Prometheus metrics shared by web, worker and scheduler."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOKS = Counter(
    "cb_webhooks_total", "Webhooks received, by outcome and event type", ["outcome", "type"]
)
EVENTS = Counter(
    "cb_events_processed_total", "Events processed by the worker, by outcome", ["outcome"]
)
GRANTS = Counter("cb_grants_created_total", "Grants created, by source", ["source"])
DEAD_LETTERS = Counter("cb_dead_letters_total", "Events dead-lettered, by queue", ["queue"])
LAG = Histogram(
    "cb_processing_lag_seconds",
    "From the webhook's timestamp to the commit of its effect",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RECONCILE_RUNS = Counter("cb_reconcile_runs_total", "Reconciliation runs, by outcome", ["outcome"])
RECONCILE_REPAIRS = Counter(
    "cb_reconcile_repairs_total", "Results a reconciliation found new or changed (lost webhooks)"
)
INFOCAPTION_BAD_RECORDS = Counter(
    "cb_infocaption_bad_records_total", "Records from the InfoCaption API that could not be used"
)

"""Scheduler jobs that keep tables small: rejected webhooks after their retention, the coverage summaries."""
from __future__ import annotations

import logging

from datetime import datetime

from psycopg_pool import ConnectionPool

from service.platform import db
from service.reports import reports

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0
PRUNE_BATCH = 5000
COMPACT_INTERVAL_S = 300.0


def prune_rejected_webhooks(pool: ConnectionPool, retention_days: int, *, batch: int = PRUNE_BATCH) -> int:
    """Delete rejected webhooks older than `retention_days` (REJECTED_RETENTION_DAYS); return how many."""
    pruned = 0
    while True:
        with pool.connection() as conn:  # one transaction a batch: short locks, steady progress
            deleted = conn.execute(db.q("prune_rejected_webhooks"),
                                   {"days": retention_days, "limit": batch}).rowcount
        pruned += deleted
        if deleted < batch:
            break
    log.info("pruned %d rejected webhook(s) older than %d days", pruned, retention_days)
    return pruned


def compact_coverage(pool: ConnectionPool, tz) -> None:
    """Fold the coverage summaries (docs/admin-api.md, "How the reports stay fast")."""
    with pool.connection() as conn:
        reports.compact_coverage(conn, today=datetime.now(tz).date())

"""Scheduler jobs that keep kept-for-a-while tables small: rejected webhooks after their retention."""
from __future__ import annotations

import logging

from psycopg_pool import ConnectionPool

from service.platform import db

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0
PRUNE_BATCH = 5000


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

"""The result worker: queued webhook events become recorded results and grants."""
from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime

import psycopg

from service.platform import messaging, tenancy
from service.tenants.tenants import Directory
from service.grants.pipeline import Outcome, process_events
from service.platform.metrics import EVENTS, GRANTS, LAG
from workers.base import BatchWorker

log = logging.getLogger(__name__)


class ResultWorker(BatchWorker):
    """Apply webhook events (results and course status changes) in set-based batches."""

    kind = messaging.EVENTS

    def __init__(self, settings, pool, **kwargs):
        super().__init__(settings, pool, **kwargs)
        self.tenants = Directory(settings, pool)

    def handle(self, conn: psycopg.Connection, bodies: list[dict]) -> Outcome:
        # A batch is one tenant's (workers/base.py): its events' dates are of its time zone.
        tenant = self.tenants.by_id(tenancy.current() or tenancy.DEFAULT_ID)
        tz = tenant.time_zone if tenant is not None else self.settings.time_zone
        return process_events(conn, bodies, tz=tz)

    def after_commit(self, bodies: list[dict], outcomes: list[Outcome]) -> None:
        out = Outcome()
        for each in outcomes:  # one per batch, or one per event when decided one by one
            out.add(each)
        now = time.time()
        tenant = tenancy.label()  # a batch's events are one tenant's (workers/base.py)
        for body in bodies:
            ts = body.get("received_at") or body.get("timestamp")
            try:
                LAG.labels(tenant).observe(max(0.0, now - datetime.fromisoformat(ts).timestamp()))
            except (TypeError, ValueError):
                pass
        EVENTS.labels(outcome="duplicate").inc(out.duplicates)
        for status, count in Counter(out.statuses.values()).items():
            EVENTS.labels(outcome=status).inc(count)
        GRANTS.labels(source="webhook", tenant=tenant).inc(out.grants_created)
        for body in bodies:
            result = body.get("result") or {}
            log.info(
                "event handled",
                extra={
                    "event": body.get("type"),
                    "webhook_id": body.get("webhook_id"),
                    "result_id": result.get("id"),
                    "outcome": out.statuses.get(result.get("id"), "duplicate_or_unchanged")
                    if result else "status_change",
                },
            )

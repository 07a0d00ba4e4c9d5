"""The scheduler: periodic jobs, run by one process at a time (a PostgreSQL advisory lock)."""
from __future__ import annotations

import logging
import signal
import threading
import time

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import psycopg

from service.events import outbox as events_outbox
from service.platform import db, tenancy
from service.platform.config import Settings
from service.platform.messaging import Publisher, PublishError
from service.platform.observability import init_sentry
from service.tenants.tenants import Directory, Tenant
from workers import housekeeping
from workers.jobs import Job
from workers.reconcile import periodic_jobs

log = logging.getLogger(__name__)

# How often the expiry notices are looked for: the first run of a day reads every grant inside a
# lead time, the others only grants changed since (cheap); each notice is sent once.
EXPIRY_NOTICES_INTERVAL_S = 60.0

# Any fixed number; every scheduler process competes for it and only the holder works.
SCHEDULER_LOCK_KEY = 7_413_002
# Tenants whose jobs run at once: a tenant whose InfoCaption is slow or down holds one of
# these, never the others' turn (docs/tenants.md, "The scheduler").
TENANT_THREADS = 4


def relay_outbox(pool, publisher: Publisher, limit: int = 100) -> int:
    """Publish work written to the outbox by committed transactions; return how many.

    The outbox is the platform's: each message goes out with the tenant whose work it is."""
    sent = 0
    with pool.connection() as conn:
        rows = conn.execute(db.q("outbox_pending"), {"limit": limit}).fetchall()
        for row in rows:
            try:
                publisher.publish(dict(row["payload"], tenant=row["tenant_id"]), kind=row["topic"])
            except PublishError:
                log.warning("outbox relay: broker unavailable; will retry")
                break
            conn.execute(db.q("outbox_mark_published"), {"id": row["id"]})
            conn.commit()
            sent += 1
    return sent


def notice_expiries(pool, settings: Settings, today: date | None = None,
                    tz: str | None = None) -> dict:
    """grant.expiring and grant.expired notices due today (the bound tenant's day, in its
    time zone `tz`), once each (docs/events.md)."""
    day = today or datetime.now(ZoneInfo(tz) if tz else settings.tz).date()
    with pool.connection() as conn:
        return events_outbox.notice_expiries(conn, settings, day)


def prune_delivered(pool, now: datetime | None = None) -> int:
    """Forget deliveries delivered more than 30 days ago, a batch per transaction; return how many."""
    pruned = 0
    while True:
        with pool.connection() as conn:
            counts = events_outbox.prune_delivered(conn, now=now or datetime.now(timezone.utc))
        pruned += counts["deliveries"]
        if counts["deliveries"] < events_outbox.PRUNE_BATCH:
            return pruned


class Scheduler:
    """Hold the advisory lock on a dedicated connection and run due jobs."""

    def __init__(self, settings: Settings, database_url: str, jobs: list[Job] | None = None):
        self.settings = settings
        self.database_url = database_url
        self.pool = db.make_pool(database_url, max_size=3, name="scheduler",
                                time_zone=settings.time_zone)
        self.publisher = Publisher(settings, self.pool)
        self.stopping = threading.Event()
        self.tenants = Directory(settings, self.pool)
        self._tenant_threads = ThreadPoolExecutor(max_workers=TENANT_THREADS,
                                                  thread_name_prefix="tenant-jobs")
        self._busy: dict[int, Future] = {}  # tenant id -> its jobs under way
        self.jobs = jobs if jobs is not None else self.default_jobs()

    def default_jobs(self) -> list[Job]:
        s, pool = self.settings, self.pool
        jobs = [Job("outbox", 1.0, lambda: relay_outbox(pool, self.publisher))]
        jobs.append(Job("expiry_notices", EXPIRY_NOTICES_INTERVAL_S, per_tenant=True,
                        run=lambda t: notice_expiries(pool, s, tz=t.time_zone)))
        jobs.append(Job("prune_delivered_events", housekeeping.PRUNE_INTERVAL_S, per_tenant=True,
                        run=lambda t: prune_delivered(pool)))
        jobs.append(Job("prune_rejected_webhooks", housekeeping.PRUNE_INTERVAL_S, per_tenant=True,
                        run=lambda t: housekeeping.prune_rejected_webhooks(pool, s.rejected_retention_days)))
        jobs.append(Job("compact_coverage", housekeeping.COMPACT_INTERVAL_S, per_tenant=True,
                        run=lambda t: housekeeping.compact_coverage(pool, ZoneInfo(t.time_zone))))
        return jobs + periodic_jobs(s, pool, self.publisher)

    def stop(self, *_args) -> None:
        self.stopping.set()

    def run(self) -> None:
        lock_conn = None
        while not self.stopping.is_set():
            try:
                if lock_conn is None or lock_conn.closed:
                    lock_conn = psycopg.connect(self.database_url, autocommit=True)
                (held,) = lock_conn.execute(db.q("scheduler_try_lock"), {"key": SCHEDULER_LOCK_KEY}).fetchone()
                if not held:
                    self.stopping.wait(2.0)
                    continue
                log.info("scheduler lock taken; running jobs")
                while not self.stopping.is_set():
                    lock_conn.execute(db.q("scheduler_ping"))  # notices a lost session (and lock) early
                    self.run_due(wait=False)
                    self.stopping.wait(0.5)
            except psycopg.OperationalError as exc:
                log.warning("scheduler lost the database (%s); retrying", exc.__class__.__name__)
                lock_conn = None
                self.stopping.wait(2.0)
        if lock_conn is not None and not lock_conn.closed:
            lock_conn.close()
        self._tenant_threads.shutdown(wait=True)
        self.pool.close()
        self.publisher.close()

    def run_due(self, wait: bool = True) -> None:
        """Run the jobs that are due: the platform's here, each tenant's on the tenant threads
        (`wait`: until they are done, as tests and commands want; the loop does not wait)."""
        now = time.monotonic()
        per_tenant = []
        for job in self.jobs:
            if now < job.next_at:
                continue
            job.next_at = now + job.interval_s
            if job.per_tenant:
                per_tenant.append(job)
                continue
            try:
                job.run()
            except psycopg.OperationalError:
                raise
            except Exception:  # noqa: BLE001 - one failing job must not stop the others
                log.exception("scheduled job %s failed", job.name)
        if not per_tenant:
            return
        started = []
        for tenant in self.tenants.active():
            busy = self._busy.get(tenant.id)
            if busy is not None and not busy.done():
                # Still at its last round (its InfoCaption slow?): it waits, nobody else does.
                log.info("jobs of tenant %s still running; %s left for the next round",
                         tenant.slug, ", ".join(j.name for j in per_tenant))
                continue
            future = self._tenant_threads.submit(self._run_for_tenant, tenant, per_tenant)
            self._busy[tenant.id] = future
            started.append(future)
        if wait:
            for future in started:
                future.result()

    def _run_for_tenant(self, tenant: Tenant, jobs: list[Job]) -> None:
        with tenancy.scope(tenant.id):
            for job in jobs:
                try:
                    job.run(tenant)
                except Exception:  # noqa: BLE001 - one failing job must not stop the others
                    log.exception("scheduled job %s of tenant %s failed", job.name, tenant.slug)


def run_scheduler(settings: Settings, database_url: str) -> None:
    init_sentry(settings.sentry_dsn, "scheduler", settings.environment)
    scheduler = Scheduler(settings, database_url)
    signal.signal(signal.SIGTERM, scheduler.stop)
    signal.signal(signal.SIGINT, scheduler.stop)
    scheduler.run()

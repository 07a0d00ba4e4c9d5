"""Periodic jobs of the scheduler: catalog refresh, reconciliation (docs/rules.md, rules 6 and 7).

Catalog refresh: the published courses (guide types 14 and 18) are upserted; a known course
the catalog no longer lists becomes `unpublished`, or `deleted` when its results endpoint
answers 404; a listed course that was not published becomes `published` again. The time of a
change is when the refresh read the catalog (for a course published again: its
`datePublished` when that is later than its last change), so that a webhook about the same
course, arriving before or after, leads to the same outcome.

Reconciliation: for every linked, published course, the results changed since the course's
cursor (`job_cursors`, name `reconcile:<course id>`) are read from the API and fed through
the same pipeline as webhooks. The first window of a course starts when it was linked (the
backfill covers what came before); each window overlaps the previous one by OVERLAP, so a
clock difference between InfoCaption and us costs repeats (which change nothing), never gaps.
A lost webhook is therefore granted by the next run: at most one interval late.

A result the reconciliation stores (new, or changed) counts as *repaired* only when it changed
more than REPAIR_GRACE before the run: a younger one may have its webhook still queued (the
worker behind, or the webhook on its way), so it is stored (what the webhook brings later then
changes nothing) and counted as `ahead` instead, never as a webhook lost. A webhook queued for
longer than REPAIR_GRACE is counted as repaired: the grace is a bound, not knowledge of the
queue. A record that cannot be read or stored is counted in `errors`, kept for ops
(service/grants/pipeline.py, keep_bad_records) and the run goes on. Every run logs one line:
courses read, results seen, repaired, ahead, errors, grants created, failed courses.

Only the scheduler holding the advisory lock runs these jobs (workers/scheduler.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from service.catalog.guides import COURSE_GUIDE_TYPES
from service.platform import db, tenancy
from service.platform.config import Settings
from service.grants.pipeline import (apply_course_status, apply_results_keeping_going,
                                     keep_bad_records)
from service.infocaption.client import CourseGone, InfoCaptionClient, InfoCaptionError
from service.platform.metrics import GRANTS, RECONCILE_REPAIRS, RECONCILE_RUNS
from service.tenants.clients import Clients
from workers.jobs import Job

log = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=5)
REPAIR_GRACE = timedelta(minutes=5)  # a result changed since may have its webhook still queued
PAGE_SIZE = 500


@dataclass
class CatalogOutcome:
    listed: int = 0
    published: list[int] = field(default_factory=list)  # published again
    unpublished: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)


@dataclass
class ReconcileOutcome:
    courses: int = 0
    results: int = 0  # records seen, readable or not
    repairs: int = 0  # results new or changed, older than REPAIR_GRACE: webhooks had not brought them
    ahead: int = 0  # results new or changed, younger: their webhook may still be queued
    errors: int = 0  # records that could not be read or stored (kept for ops)
    grants_created: int = 0
    failed_courses: list[int] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def refresh_catalog(settings: Settings, pool: ConnectionPool, client: InfoCaptionClient,
                    tz: str | None = None) -> CatalogOutcome:
    """Bring the course catalog and course statuses in line with InfoCaption's (of the bound
    tenant, whose time zone `tz` is)."""
    out = CatalogOutcome()
    seen_at = _now()
    courses = client.published_courses()  # the whole list or an exception: never half a list
    out.listed = len(courses)
    tz = tz or settings.time_zone
    with pool.connection() as conn, conn.transaction():
        rows = conn.execute(db.q("catalog_upsert_courses"), {
            "ids": [c.id for c in courses], "names": [c.name for c in courses],
            "guide_types": [c.guide_type for c in courses], "seen": [seen_at] * len(courses),
        }).fetchall()
        listed = {c.id: c for c in courses}
        for row in rows:
            if row["status"] == "published":
                continue
            course = listed[row["id"]]
            changed_at = seen_at
            dp = course.date_published
            last = row["status_changed_at"]
            if dp is not None and (last is None or last < dp) and dp <= seen_at:
                changed_at = dp  # published again before we looked: results since then count
            apply_course_status(conn, course.as_dict(), "published", changed_at, source="catalog", tz=tz)
            out.published.append(course.id)
        missing = conn.execute(db.q("catalog_missing_courses"), {
            "listed": list(listed), "guide_types": sorted(COURSE_GUIDE_TYPES)}).fetchall()
    if missing and not courses:
        # An empty catalog is far likelier a glitch than every course unpublished at once.
        log.warning("catalog refresh: InfoCaption listed no course at all; statuses left as they are")
        return out
    for row in missing:
        try:
            exists = client.course_exists(row["id"])
        except InfoCaptionError as exc:
            log.warning("catalog refresh: course %s not checked (%s)", row["id"], exc)
            continue
        status = "unpublished" if exists else "deleted"
        if status == row["status"]:
            continue
        with pool.connection() as conn, conn.transaction():
            apply_course_status(conn, {"id": row["id"], "name": row["name"], "guide_type": row["guide_type"]},
                                status, seen_at, source="catalog", tz=tz)
        (out.unpublished if status == "unpublished" else out.deleted).append(row["id"])
    if out.published or out.unpublished or out.deleted:
        log.info("catalog refresh: %d listed; published again %s, unpublished %s, deleted %s",
                 out.listed, out.published, out.unpublished, out.deleted)
    return out


def reconcile(settings: Settings, pool: ConnectionPool, client: InfoCaptionClient,
              page_size: int = PAGE_SIZE, tz: str | None = None) -> ReconcileOutcome:
    """Read results changed since each linked course's cursor and apply them (of the bound
    tenant, whose time zone `tz` is)."""
    out = ReconcileOutcome()
    tz = tz or settings.time_zone
    with pool.connection() as conn:
        courses = conn.execute(db.q("reconcile_courses")).fetchall()
    for row in courses:
        course = {"id": row["id"], "name": row["name"], "guide_type": row["guide_type"]}
        started = _now()
        cursor = row["cursor"] or {}
        try:
            since = datetime.fromisoformat(cursor["changed_since"])
        except (KeyError, TypeError, ValueError):
            since = row["linked_at"]
        out.courses += 1
        try:
            for page in client.result_pages(course, hits_per_page=page_size,
                                            changed_since=since - OVERLAP):
                out.results += page.received
                if not page.items and not page.rejected:
                    continue
                with pool.connection() as conn, conn.transaction():
                    done, refused = apply_results_keeping_going(
                        conn, page.items, source="reconciliation", tz=tz)
                    keep_bad_records(conn, page.rejected + refused, source="reconciliation",
                                     course_id=course["id"])
                out.errors += page.skipped + len(refused)
                settled = started - REPAIR_GRACE
                for rec in {r.id: r for r in page.items}.values():
                    if rec.id in done.statuses:
                        if (rec.changed_at or rec.completed_at) <= settled:
                            out.repairs += 1
                        else:
                            out.ahead += 1
                out.grants_created += done.grants_created
        except CourseGone:
            with pool.connection() as conn, conn.transaction():
                apply_course_status(conn, course, "deleted", started, source="catalog", tz=tz)
            log.info("reconciliation: course %s no longer exists; marked deleted", course["id"])
            continue
        except InfoCaptionError as exc:
            log.warning("reconciliation of course %s failed: %s", course["id"], exc)
            out.failed_courses.append(course["id"])
            continue
        with pool.connection() as conn:
            conn.execute(db.q("save_job_cursor"), {
                "name": f"reconcile:{course['id']}",
                "cursor": Jsonb({"changed_since": started.isoformat()}),
            })
    RECONCILE_REPAIRS.inc(out.repairs)
    GRANTS.labels(source="reconciliation", tenant=tenancy.label()).inc(out.grants_created)
    RECONCILE_RUNS.labels(outcome="error" if out.failed_courses else "ok").inc()
    # One line every run, also when nothing was found: it shows the scheduler is alive.
    log.info("reconciliation: %d course(s) read, %d result(s) seen, %d repaired, %d ahead of "
             "their webhook, %d error(s), %d grant(s) created; failed courses: %s",
             out.courses, out.results, out.repairs, out.ahead, out.errors, out.grants_created,
             out.failed_courses or "none")
    return out


def periodic_jobs(settings: Settings, pool: ConnectionPool, publisher) -> list:
    """The scheduler's jobs of this module, for each tenant with its own InfoCaption host and
    credentials: catalog refresh first, then reconciliation."""
    # Few, short retries: the next run catches up anyway.
    clients = Clients(settings, max_attempts=4, backoff_cap_s=5.0)
    interval = settings.reconcile_interval_s
    return [
        Job("catalog", interval, per_tenant=True, run=lambda tenant: refresh_catalog(
            settings, pool, clients.of(tenant), tz=tenant.time_zone)),
        Job("reconcile", interval, per_tenant=True, run=lambda tenant: reconcile(
            settings, pool, clients.of(tenant), tz=tenant.time_zone)),
    ]

"""Events written in the transaction of the change that causes them (docs/events.md, "Types").

grant.created, grant.renewed and grant.revoked come from triggers on grants (migration 0011),
whichever path inserts or revokes; the functions here are called by the competence delete and
by the scheduler's expiry job.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import psycopg

from service.platform import db
from service.platform.config import Settings

log = logging.getLogger(__name__)

# A run later in the day reads the grants changed since the previous run, less this margin: a
# transaction that began before that run and committed after it is still seen.
CHANGED_MARGIN = timedelta(minutes=10)

def competence_deleted(conn: psycopg.Connection, competence_id: int) -> None:
    """Emit grant.deleted for every grant of a competence; call before deleting them."""
    conn.execute(db.q("events_emit_competence_deleted"), {"competence_id": competence_id})


def notice_expiries(conn: psycopg.Connection, settings: Settings, today: date) -> dict:
    """Record the expiry notices due `today` and emit their events and mails; return counts.

    The day's first run reads every grant inside a lead time (and catches up after downtime);
    later runs that day read only the grants changed since the previous run (docs/events.md).
    """
    state = conn.execute(db.q("notices_state")).fetchone()
    at = conn.execute(db.q("notices_now")).fetchone()["now"]
    first_of_day = state is None or state["last_day"] < today
    counts = conn.execute(db.q("notices_due"), {
        "today": today, "leads": list(settings.expiry_notice_days), "mail": bool(settings.smtp_url),
        # grant.expired for grants that ended since the previous run's day (the day before on
        # the first run ever: nothing older is news).
        "prev_day": (state["last_day"] if state else today - timedelta(days=1)),
        "changed_after": None if first_of_day else state["last_at"] - CHANGED_MARGIN,
    }).fetchone()
    conn.execute(db.q("notices_state_save"), {"today": max(today, state["last_day"]) if state else today,
                                              "at": at})
    if counts["noticed"]:
        log.info("expiry notices for %s: %s noticed, %s events, %s deliveries, %s mails", today,
                 counts["noticed"], counts["events"], counts["webhooks"], counts["mails"])
    return dict(counts)


DELIVERED_RETENTION_DAYS = 30  # a delivered event stays in the delivery log this long
PRUNE_BATCH = 5000


def prune_delivered(conn: psycopg.Connection, *, now: datetime, days: int = DELIVERED_RETENTION_DAYS,
                    batch: int = PRUNE_BATCH) -> dict:
    """Forget one batch of deliveries delivered more than `days` ago (and events left without any)."""
    return dict(conn.execute(db.q("prune_delivered"), {"now": now, "days": days, "limit": batch}).fetchone())

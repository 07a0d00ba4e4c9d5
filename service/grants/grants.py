"""Grants as admins see them, current and past with their status, and revoking one (rule 5)."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import psycopg

from service.ops.audit import audit
from service.platform import db
from service.platform.errors import Conflict, Invalid, NotFound
from service.platform.paging import Page, page_of

# A grant's status on a day (docs/rules.md, "The status of a grant"; grant_status, migration 0008).
STATUSES = ("active", "upcoming", "expired", "revoked")


def today(tz: str) -> date:
    """The date now in the organisation's time zone: the day a grant's status is told for."""
    return datetime.now(ZoneInfo(tz)).date()


def list_grants(conn: psycopg.Connection, *, employee_id: int | None, competence_id: int | None,
                status: str | None = None, tz: str, limit: int, offset: int) -> Page:
    """Grants, current and past, with evidence, validity, status today and the names they concern."""
    return page_of(conn, "admin_grants", {"employee_id": employee_id, "competence_id": competence_id,
                                          "status": status, "day": today(tz), "id": None},
                   limit, offset)


def get_grant(conn: psycopg.Connection, grant_id: int, *, tz: str) -> dict | None:
    """One grant as the list shows it, or None."""
    page = page_of(conn, "admin_grants", {"employee_id": None, "competence_id": None, "status": None,
                                          "day": today(tz), "id": grant_id}, 1, 0)
    return page.items[0] if page.items else None


def revoke_grant(conn: psycopg.Connection, grant_id: int, reason: str, *, actor: str,
                 tz: str = "Europe/Stockholm") -> dict:
    """Revoke one grant: it stays in the history as revoked; its result never grants it again (rule 5)."""
    reason = reason.strip()
    if not reason:
        raise Invalid("a reason is required", {"reason": ["must not be blank"]})
    before = get_grant(conn, grant_id, tz=tz)
    row = conn.execute(db.q("admin_grant_revoke"), {
        "id": grant_id, "reason": reason, "revoked_by": actor}).fetchone()
    if row is None:
        earlier = conn.execute(db.q("admin_grant_revocation_of_grant"), {"grant_id": grant_id}).fetchone()
        if earlier is not None:
            raise Conflict(
                f"grant {grant_id} was revoked already, at {earlier['revoked_at'].isoformat()} "
                f"by {earlier['revoked_by']}",
                {"revoked_at": [earlier["revoked_at"].isoformat()],
                 "revoked_by": [earlier["revoked_by"]], "reason": [earlier["reason"]]})
        raise NotFound(f"grant {grant_id} does not exist")
    revoked = get_grant(conn, grant_id, tz=tz)
    # The grant as it was, without the names it concerns (the audit log keeps evidence).
    kept = {k: v for k, v in before.items() if k not in ("employee_email", "employee_name")}
    audit(conn, actor, "grant.revoke", f"grant:{grant_id}", kept, {"reason": reason})
    return revoked

"""Grants as admins see them, and revoking one (rule 5)."""
from __future__ import annotations

import psycopg

from service.events import outbox
from service.ops.audit import audit
from service.platform import db
from service.platform.errors import Conflict, Invalid, NotFound
from service.platform.paging import Page, page_of


def list_grants(conn: psycopg.Connection, *, employee_id: int | None, competence_id: int | None,
                limit: int, offset: int) -> Page:
    """Grants with their evidence (course, result, webhook, link) and validity."""
    return page_of(conn, "admin_grants", {"employee_id": employee_id, "competence_id": competence_id},
                 limit, offset)


def revoke_grant(conn: psycopg.Connection, grant_id: int, reason: str, *, actor: str) -> dict:
    """Revoke one grant; its result never grants it again (rule 5)."""
    reason = reason.strip()
    if not reason:
        raise Invalid("a reason is required", {"reason": ["must not be blank"]})
    grant = conn.execute(db.q("admin_grant_delete"), {"id": grant_id}).fetchone()
    if grant is None:
        earlier = conn.execute(db.q("admin_grant_revocation_of_grant"), {"grant_id": grant_id}).fetchone()
        if earlier is not None:
            raise Conflict(
                f"grant {grant_id} was revoked already, at {earlier['revoked_at'].isoformat()} "
                f"by {earlier['revoked_by']}",
                {"revocation_id": [earlier["id"]], "revoked_at": [earlier["revoked_at"].isoformat()],
                 "revoked_by": [earlier["revoked_by"]], "reason": [earlier["reason"]]})
        raise NotFound(f"grant {grant_id} does not exist")
    revocation = conn.execute(db.q("admin_grant_revocation_insert"), {
        "grant_id": grant["id"], "employee_id": grant["employee_id"],
        "competence_id": grant["competence_id"], "result_id": grant["result_id"],
        "valid_from": grant["valid_from"], "valid_to": grant["valid_to"],
        "reason": reason, "revoked_by": actor,
    }).fetchone()
    outbox.grant_revoked(conn, grant, revoked_at=revocation["revoked_at"], reason=reason)
    audit(conn, actor, "grant.revoke", f"grant:{grant_id}", grant,
          {"reason": reason, "revocation_id": revocation["id"]})
    return revocation

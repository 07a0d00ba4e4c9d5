"""Links between courses and competences; creating one starts its backfill (rule 4)."""
from __future__ import annotations

from psycopg.types.json import Jsonb
import psycopg

from service.catalog.competences import COMPETENCE
from service.ops.audit import audit
from service.catalog.guides import is_course
from service.platform import db
from service.platform.errors import Conflict, Invalid, NotFound
from service.platform.paging import Page, page_of


BACKFILL_TOPIC = "backfill"


def _link(row: dict) -> dict:
    link = {k: row[k] for k in ("id", "course_id", "course_name", "course_status", "competence_id",
                                "competence_name", "created_at", "created_by")}
    link["backfill"] = {
        "state": row["backfill_state"], "total": row["backfill_total"],
        "processed": row["backfill_processed"], "granted": row["backfill_granted"],
        "already_held": row["backfill_already_held"], "not_passed": row["backfill_not_passed"],
        "not_published": row["backfill_not_published"], "unmatched": row["backfill_unmatched"],
        "errors": row["backfill_errors"],
        "started_at": row["backfill_started_at"], "finished_at": row["backfill_finished_at"],
        "error": row["backfill_error"],
    }
    return link


def list_links(conn: psycopg.Connection, *, course_id: int | None, competence_id: int | None,
               limit: int, offset: int) -> Page:
    """Links, optionally of one course and/or competence."""
    page = page_of(conn, "admin_links", {"course_id": course_id, "competence_id": competence_id},
                 limit, offset)
    page.items = [_link(r) for r in page.items]
    return page


def get_link(conn: psycopg.Connection, link_id: int) -> dict:
    """One link with its course's status and its backfill's progress."""
    row = conn.execute(db.q("admin_link_get"), {"id": link_id}).fetchone()
    if row is None:
        raise NotFound(f"link {link_id} does not exist")
    return _link(row)


def create_link(conn: psycopg.Connection, course_id: int, competence_id: int, *, actor: str) -> dict:
    """Link a published course to a leaf competence and queue its backfill (rule 4)."""
    course = conn.execute(db.q("admin_course_get"), {"id": course_id}).fetchone()
    if course is None:
        raise Invalid(
            f"course {course_id} is not in the catalog: InfoCaption has not published it, or the "
            "catalog has not been refreshed since (the scheduler reads it periodically)",
            {"course_id": ["not in the catalog"]})
    named = f"course {course_id} ({course['name']})"
    if not is_course(course["guide_type"]):
        raise Invalid(
            f"{named} is a guide (guideType {course['guide_type']}), not a course; "
            "only courses (guideType 14 or 18) can be linked",
            {"course_id": [f"a guide (guideType {course['guide_type']}), not a course"]})
    if course["status"] != "published":
        raise Invalid(
            f"{named} is not published (status {course['status']}); only published courses can "
            "be linked",
            {"course_id": [f"not published (status {course['status']})"]})
    comp = conn.execute(db.q("admin_competence_share"), {"id": competence_id}).fetchone()
    if comp is None:
        raise Invalid(f"competence {competence_id} does not exist",
                      {"competence_id": ["does not exist"]})
    if comp["kind"] != COMPETENCE:
        raise Invalid(
            f"competence {competence_id} is a {comp['kind']}; only competences (leaves) can be linked",
            {"competence_id": [f"a {comp['kind']}, not a competence (leaf)"]})
    row = conn.execute(db.q("admin_link_insert"), {
        "course_id": course_id, "competence_id": competence_id, "created_by": actor,
    }).fetchone()
    if row is None:
        existing = conn.execute(db.q("admin_link_find"), {
            "course_id": course_id, "competence_id": competence_id}).fetchone()
        raise Conflict(
            f"course {course_id} is already linked to competence {competence_id}",
            {"link_id": [existing["id"] if existing else None]})
    # Same transaction: the backfill starts only if the link commits, and always then.
    conn.execute(db.q("outbox_insert"), {"topic": BACKFILL_TOPIC, "payload": Jsonb({"link_id": row["id"]})})
    link = get_link(conn, row["id"])
    audit(conn, actor, "link.create", f"link:{row['id']}", None,
          {"course_id": course_id, "competence_id": competence_id})
    return link


def delete_link(conn: psycopg.Connection, link_id: int, *, actor: str) -> None:
    """Delete a link; the grants it produced stay (rule 5)."""
    row = conn.execute(db.q("admin_link_delete"), {"id": link_id}).fetchone()
    if row is None:
        raise NotFound(f"link {link_id} does not exist")
    audit(conn, actor, "link.delete", f"link:{link_id}", row, None)

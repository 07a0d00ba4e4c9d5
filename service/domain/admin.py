"""What the admin API does: links, the competence tree, employees, grants, reports, audit.

Every function takes an open connection and leaves the transaction to its caller; every change
writes its audit row in that same transaction (docs/rules.md, rule 8). Refusals are raised as
`NotFound`, `Conflict` or `Invalid`, which the HTTP edge maps to 404, 409 and 422.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Callable

import psycopg
from psycopg.types.json import Jsonb

from service import db
from service.domain import pipeline
from service.domain.rules import COURSE_GUIDE_TYPES, is_course, normalize_email

log = logging.getLogger(__name__)

MAIN_GROUP, GROUP, COMPETENCE = "main_group", "group", "competence"
KINDS = (MAIN_GROUP, GROUP, COMPETENCE)
# The kind a node's parent must have; a main group has no parent.
PARENT_KIND = {MAIN_GROUP: None, GROUP: MAIN_GROUP, COMPETENCE: GROUP}
BACKFILL_TOPIC = "backfill"
REPLAYABLE_KINDS = ("events", "backfill")
# A node with children is refused deletion; this many of them are named in the answer.
CHILDREN_NAMED = 20


class AdminError(Exception):
    """A request the rules refuse; `errors` says which field and why."""

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class NotFound(AdminError):
    """The addressed thing does not exist."""


class Conflict(AdminError):
    """The change clashes with what exists (a duplicate, children left)."""


class Invalid(AdminError):
    """The request is well-formed but the rules refuse it."""


@dataclass
class Page:
    """One page of a list and the total number of items."""

    items: list[dict]
    total: int


@dataclass
class ReplayOutcome:
    """What a dead-letter replay did; `error` is set when the broker stopped it midway."""

    replayed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    error: str | None = None


def jsonable(value):
    """Return a JSON-ready copy of a row (dates as ISO-8601 text) for the audit log."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def audit(conn: psycopg.Connection, actor: str, action: str, target: str,
          before: dict | None = None, after: dict | None = None) -> None:
    """Write one audit row in the caller's transaction."""
    conn.execute(db.q("insert_audit"), {
        "actor": actor, "action": action, "target": target,
        "before": None if before is None else Jsonb(jsonable(before)),
        "after": None if after is None else Jsonb(jsonable(after)),
    })


def _page(conn: psycopg.Connection, name: str, params: dict, limit: int, offset: int) -> Page:
    total = conn.execute(db.q(f"{name}_count"), params).fetchone()["total"]
    if offset >= total:
        return Page([], total)
    rows = conn.execute(db.q(f"{name}_page"), {**params, "limit": limit, "offset": offset}).fetchall()
    return Page(rows, total)


# --- courses ----------------------------------------------------------------------------------

def like_pattern(text: str) -> str:
    """Return an ILIKE pattern matching `text` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_courses(conn: psycopg.Connection, *, q: str | None, limit: int, offset: int) -> Page:
    """Published courses (never guides), by name, optionally containing `q`."""
    params = {"guide_types": sorted(COURSE_GUIDE_TYPES),
              "pattern": like_pattern(q) if q else None}
    return _page(conn, "admin_courses", params, limit, offset)


# --- links ------------------------------------------------------------------------------------

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
    page = _page(conn, "admin_links", {"course_id": course_id, "competence_id": competence_id},
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


# --- the competence tree ----------------------------------------------------------------------

def list_competences(conn: psycopg.Connection, *, parent_id: int | None, kind: str | None,
                     limit: int, offset: int) -> Page:
    """The tree, depth first, optionally the children of one node or the nodes of one kind."""
    return _page(conn, "admin_competences", {"parent_id": parent_id, "kind": kind}, limit, offset)


def get_competence(conn: psycopg.Connection, competence_id: int) -> dict:
    row = conn.execute(db.q("admin_competence_get"), {"id": competence_id}).fetchone()
    if row is None:
        raise NotFound(f"competence {competence_id} does not exist")
    return row


def _check_parent(conn: psycopg.Connection, kind: str, parent_id: int | None) -> None:
    """Enforce main group -> group -> competence; lock the parent so it stays as checked."""
    wanted = PARENT_KIND[kind]
    if wanted is None:
        if parent_id is not None:
            raise Invalid("a main group has no parent", {"parent_id": ["must be null for a main group"]})
        return
    if parent_id is None:
        raise Invalid(f"a {kind} needs a parent ({wanted})", {"parent_id": [f"required: a {wanted}"]})
    parent = conn.execute(db.q("admin_competence_share"), {"id": parent_id}).fetchone()
    if parent is None:
        raise Invalid(f"parent {parent_id} does not exist", {"parent_id": ["does not exist"]})
    if parent["kind"] != wanted:
        raise Invalid(f"the parent of a {kind} must be a {wanted}, not a {parent['kind']}",
                      {"parent_id": [f"a {parent['kind']}, must be a {wanted}"]})


def _check_settings(kind: str, values: dict) -> None:
    """Validity and renewal belong to competences (leaves) only."""
    if kind == COMPETENCE:
        return
    errors = {}
    if values.get("default_valid_days") is not None:
        errors["default_valid_days"] = ["only a competence (leaf) has a validity"]
    if values.get("renew_on_completion"):
        errors["renew_on_completion"] = ["only a competence (leaf) can be renewed"]
    if errors:
        raise Invalid(f"a {kind} has no validity or renewal", errors)


def create_competence(conn: psycopg.Connection, data: dict, *, actor: str) -> dict:
    """Add a node to the tree."""
    values = {
        "parent_id": data.get("parent_id"), "name": data["name"], "kind": data["kind"],
        "default_valid_days": data.get("default_valid_days"),
        "renew_on_completion": bool(data.get("renew_on_completion", False)),
    }
    _check_parent(conn, values["kind"], values["parent_id"])
    _check_settings(values["kind"], values)
    row = conn.execute(db.q("admin_competence_insert"), values).fetchone()
    audit(conn, actor, "competence.create", f"competence:{row['id']}", None, row)
    return row


def update_competence(conn: psycopg.Connection, competence_id: int, changes: dict, *, actor: str) -> dict:
    """Rename, move (a new parent of the right kind) or reconfigure a node."""
    before = conn.execute(db.q("admin_competence_lock"), {"id": competence_id}).fetchone()
    if before is None:
        raise NotFound(f"competence {competence_id} does not exist")
    values = {k: before[k] for k in ("parent_id", "name", "default_valid_days", "renew_on_completion")}
    values.update(changes)
    if values["parent_id"] == competence_id:
        raise Invalid("a node cannot be its own parent", {"parent_id": ["is the node itself"]})
    if "parent_id" in changes:
        _check_parent(conn, before["kind"], values["parent_id"])
    _check_settings(before["kind"], values)
    if all(values[k] == before[k] for k in values):
        return before
    row = conn.execute(db.q("admin_competence_update"), {**values, "id": competence_id}).fetchone()
    audit(conn, actor, "competence.update", f"competence:{competence_id}",
          {k: before[k] for k in changes}, {k: row[k] for k in changes})
    return row


def delete_competence(conn: psycopg.Connection, competence_id: int, *, actor: str) -> dict:
    """Delete a node without children, with every grant and link of it (rule 5).

    A main group or group that still has children is refused (409): deleting it would
    silently delete a subtree and every grant in it.
    """
    node = conn.execute(db.q("admin_competence_lock"), {"id": competence_id}).fetchone()
    if node is None:
        raise NotFound(f"competence {competence_id} does not exist")
    children = [r["id"] for r in conn.execute(
        db.q("admin_competence_children"), {"id": competence_id, "limit": CHILDREN_NAMED}).fetchall()]
    if children:
        raise Conflict(f"{node['kind']} {competence_id} still has children; delete or move them first",
                       {"children": children})
    grants = conn.execute(db.q("admin_competence_delete_grants"), {"id": competence_id}).fetchone()["n"]
    links = conn.execute(db.q("admin_competence_delete_links"), {"id": competence_id}).fetchone()["n"]
    conn.execute(db.q("admin_competence_delete"), {"id": competence_id})
    outcome = {"deleted_grants": grants, "deleted_links": links}
    audit(conn, actor, "competence.delete", f"competence:{competence_id}", node, outcome)
    return outcome


# --- employees --------------------------------------------------------------------------------

def list_employees(conn: psycopg.Connection, *, email: str | None, limit: int, offset: int) -> Page:
    return _page(conn, "admin_employees",
                 {"email": normalize_email(email) if email else None}, limit, offset)


def _grant_unmatched(conn: psycopg.Connection, emails: list[str], tz: str) -> int:
    """Grant the kept unmatched results of these normalised emails (rule 2), set-based."""
    ids = [r["id"] for r in conn.execute(
        db.q("admin_unmatched_result_ids_for_emails"), {"emails": emails}).fetchall()]
    return pipeline.evaluate_results(conn, ids, source="employee_update", tz=tz).grants_created


def create_employees(conn: psycopg.Connection, items: list[dict], *, actor: str, tz: str) -> list[dict]:
    """Create (import) employees; none at all if any normalised email is taken or repeated."""
    normalized = [normalize_email(i["email"]) for i in items]
    seen: dict[str, list[int]] = {}
    for index, email in enumerate(normalized):
        seen.setdefault(email, []).append(index)
    repeated = {email: idx for email, idx in seen.items() if len(idx) > 1}
    if repeated:
        raise Conflict(
            "the same email appears more than once in the request: " + ", ".join(sorted(repeated)),
            {"duplicates": [{"email": e, "indexes": idx} for e, idx in sorted(repeated.items())]})
    taken = conn.execute(db.q("admin_employees_by_emails"), {"emails": normalized}).fetchall()
    if taken:
        raise Conflict(
            "an employee with this email exists already: "
            + ", ".join(f"{t['email_normalized']} (employee {t['id']})" for t in taken),
            {"existing": [{"email": t["email_normalized"], "employee_id": t["id"]} for t in taken]})
    try:
        rows = conn.execute(db.q("admin_employees_insert"), {
            "emails": [i["email"].strip() for i in items], "normalized": normalized,
            "first_names": [i.get("first_name") for i in items],
            "last_names": [i.get("last_name") for i in items],
        }).fetchall()
    except psycopg.errors.UniqueViolation:
        # Another request imported one of these emails between our check and the insert.
        raise Conflict("an employee with one of these emails was created meanwhile; retry",
                       {"email": ["taken"]}) from None
    by_email = {r["email_normalized"]: r for r in rows}
    created = [by_email[e] for e in normalized]
    granted = _grant_unmatched(conn, normalized, tz)
    if len(created) == 1:
        audit(conn, actor, "employee.create", f"employee:{created[0]['id']}", None,
              {**_employee(created[0]), "granted": granted})
    else:
        audit(conn, actor, "employee.import", "employees", None,
              {"employee_ids": [c["id"] for c in created], "granted": granted})
    return [_employee(c) for c in created]


def _employee(row: dict) -> dict:
    return {k: row[k] for k in ("id", "email", "first_name", "last_name", "created_at", "updated_at")}


def update_employee(conn: psycopg.Connection, employee_id: int, changes: dict, *, actor: str, tz: str) -> dict:
    """Change an employee's email or name; a new email grants its kept unmatched results."""
    before = conn.execute(db.q("admin_employee_lock"), {"id": employee_id}).fetchone()
    if before is None:
        raise NotFound(f"employee {employee_id} does not exist")
    values = {k: before[k] for k in ("email", "first_name", "last_name")}
    values.update(changes)
    values["email"] = values["email"].strip()
    values["email_normalized"] = normalize_email(values["email"])
    email_changed = values["email_normalized"] != before["email_normalized"]
    if email_changed:
        taken = conn.execute(db.q("admin_employees_by_emails"),
                             {"emails": [values["email_normalized"]]}).fetchall()
        if taken:
            raise Conflict(
                f"employee {taken[0]['id']} has the email {values['email_normalized']} already",
                {"existing": [{"email": t["email_normalized"], "employee_id": t["id"]} for t in taken]})
    if all(values[k] == before[k] for k in ("email", "first_name", "last_name")):
        return _employee(before)
    try:
        row = conn.execute(db.q("admin_employee_update"), {**values, "id": employee_id}).fetchone()
    except psycopg.errors.UniqueViolation:
        raise Conflict("another employee took this email meanwhile; retry", {"email": ["taken"]}) from None
    granted = 0
    if email_changed:
        granted = pipeline.grant_unmatched_for_email(conn, row["email"], tz=tz).grants_created
    audit(conn, actor, "employee.update", f"employee:{employee_id}",
          {k: before[k] for k in changes}, {**{k: row[k] for k in changes}, "granted": granted})
    return _employee(row)


# --- grants -----------------------------------------------------------------------------------

def list_grants(conn: psycopg.Connection, *, employee_id: int | None, competence_id: int | None,
                limit: int, offset: int) -> Page:
    """Grants with their evidence (course, result, webhook, link) and validity."""
    return _page(conn, "admin_grants", {"employee_id": employee_id, "competence_id": competence_id},
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
    audit(conn, actor, "grant.revoke", f"grant:{grant_id}", grant,
          {"reason": reason, "revocation_id": revocation["id"]})
    return revocation


# --- reports ----------------------------------------------------------------------------------

def unmatched_report(conn: psycopg.Connection, *, email: str | None, limit: int, offset: int) -> Page:
    """Kept results with no matching employee, grouped by normalised email."""
    return _page(conn, "admin_unmatched", {"email": normalize_email(email) if email else None},
                 limit, offset)


def audit_rows(conn: psycopg.Connection, *, actor: str | None, action: str | None,
               target: str | None, limit: int, offset: int) -> Page:
    """The audit log, newest first."""
    return _page(conn, "admin_audit", {"actor": actor, "action": action, "target": target},
                 limit, offset)


# --- rejected webhooks ------------------------------------------------------------------------

def _rejected(row: dict) -> dict:
    body = row["body"]
    return {**{k: row[k] for k in ("id", "received_at", "webhook_id", "status", "reason", "errors",
                                  "headers")},
            "body": None if body is None else bytes(body).decode("utf-8", "backslashreplace"),
            "body_bytes": None if body is None else len(body)}


def list_rejected_webhooks(conn: psycopg.Connection, *, status: int | None, limit: int,
                           offset: int) -> Page:
    """Webhooks answered 4xx and kept, newest first; the body as text, bad bytes escaped."""
    page = _page(conn, "rejected_webhooks", {"status": status}, limit, offset)
    page.items = [_rejected(r) for r in page.items]
    return page


# --- dead letters -----------------------------------------------------------------------------

def pending_dead_letters(conn: psycopg.Connection) -> dict[str, int]:
    """Dead letters not replayed yet, by queue name."""
    return {r["queue"]: r["n"] for r in conn.execute(db.q("admin_dead_letters_pending_by_queue")).fetchall()}


def queue_kind(queue_name: str) -> str | None:
    """Return `events` or `backfill` for a queue name ending so, else None."""
    kind = queue_name.rsplit(".", 1)[-1]
    return kind if kind in REPLAYABLE_KINDS else None


def replay_dead_letters(conn: psycopg.Connection, ids: list[int] | None,
                        publish: Callable[[dict, str], None], *, actor: str) -> ReplayOutcome:
    """Put pending dead letters (all, or the given ids) back on their queue.

    `publish(payload, kind)` must return only once the broker holds the message. When it fails,
    the letters published so far are still marked (the caller commits) and `error` says why.
    """
    out = ReplayOutcome()
    rows = conn.execute(db.q("admin_dead_letters_take"), {"ids": ids}).fetchall()
    for row in rows:
        kind = queue_kind(row["queue"])
        if kind is None or not isinstance(row["payload"], dict):
            out.skipped.append(row["id"])
            continue
        try:
            publish(row["payload"], kind)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, the rest stays pending
            out.error = f"{exc.__class__.__name__}: {exc}"
            log.warning("dead-letter replay stopped at %s: %s", row["id"], out.error)
            break
        out.replayed.append(row["id"])
    if out.replayed:
        conn.execute(db.q("admin_dead_letters_mark_replayed"), {"ids": out.replayed})
    if out.replayed or out.skipped:
        audit(conn, actor, "dead_letters.replay", "dead_letters", None,
              {"replayed": out.replayed, "skipped": out.skipped, "error": out.error})
    return out

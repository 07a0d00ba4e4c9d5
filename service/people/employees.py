"""Employees, identified by email; a new or corrected email grants its kept results (rule 2)."""
from __future__ import annotations

import psycopg

from service.grants import pipeline
from service.ops.audit import audit
from service.people.email import normalize_email
from service.platform import db
from service.platform.errors import Conflict, NotFound
from service.platform.paging import Page, like_pattern, page_of


def list_employees(conn: psycopg.Connection, *, email: str | None, limit: int, offset: int) -> Page:
    return page_of(conn, "admin_employees",
                 {"email": normalize_email(email) if email else None}, limit, offset)


def search_employees(conn: psycopg.Connection, *, q: str | None, limit: int, offset: int) -> Page:
    """Employees whose name or email contains `q`, by name the Swedish way (å, ä, ö after z)."""
    return page_of(conn, "admin_employees_search", {"pattern": like_pattern(q.strip()) if q and q.strip() else None},
                   limit, offset)


def get_employee(conn: psycopg.Connection, employee_id: int) -> dict:
    """One employee; NotFound when there is none."""
    row = conn.execute(db.q("admin_employee_get"), {"id": employee_id}).fetchone()
    if row is None:
        raise NotFound(f"employee {employee_id} does not exist")
    return _employee(row)


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
    granted = pipeline.grant_unmatched(conn, normalized, tz=tz).grants_created
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
        granted = pipeline.grant_unmatched(conn, [row["email"]], tz=tz).grants_created
    audit(conn, actor, "employee.update", f"employee:{employee_id}",
          {k: before[k] for k in changes}, {**{k: row[k] for k in changes}, "granted": granted})
    return _employee(row)

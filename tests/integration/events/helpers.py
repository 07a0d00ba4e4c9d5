"""Seed data and small reads of the event tests."""
from __future__ import annotations

from service.events import subscriptions


def seed(conn, *, valid_days: int = 730) -> dict:
    """A course linked to a competence (in its tree) and an employee; returns their ids."""
    conn.execute("INSERT INTO courses (id, name, guide_type, status) VALUES (4711, 'HLR vuxen grund', 14, 'published')")
    main = conn.execute("INSERT INTO competences (name, kind) VALUES ('Vård', 'main_group') RETURNING id").fetchone()["id"]
    group = conn.execute("INSERT INTO competences (parent_id, name, kind) VALUES (%s, 'Akut', 'group') RETURNING id",
                         (main,)).fetchone()["id"]
    leaf = conn.execute("INSERT INTO competences (parent_id, name, kind, default_valid_days) "
                        "VALUES (%s, 'HLR vuxen', 'competence', %s) RETURNING id", (group, valid_days)).fetchone()["id"]
    conn.execute("INSERT INTO links (course_id, competence_id, created_by) VALUES (4711, %s, 'test')", (leaf,))
    employee = conn.execute(
        "INSERT INTO employees (email, email_normalized, first_name, last_name) VALUES "
        "('anna.andersson@kommun.se', 'anna.andersson@kommun.se', 'Anna', 'Andersson') RETURNING id"
    ).fetchone()["id"]
    return {"competence": leaf, "employee": employee, "group": group, "main": main}


def grant(conn, ids: dict, *, valid_from: str = "2026-11-29", valid_to: str | None = "2028-11-28",
          result_id: str = "r-98765", created_at: str | None = None) -> int:
    """Insert a grant as the grant step does (the trigger of migration 0011 sees it)."""
    return conn.execute(
        "INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source, course_id, result_id,"
        " created_at) VALUES (%s, %s, %s, %s, 'webhook', 4711, %s, coalesce(%s::timestamptz, now()))"
        " RETURNING id",
        (ids["employee"], ids["competence"], valid_from, valid_to, result_id, created_at)).fetchone()["id"]


def subscribe(conn, settings, receiver, events: list[str]) -> dict:
    """A subscription to the receiver; the receiver learns the secret to verify with."""
    sub = subscriptions.create_subscription(conn, settings, {"url": receiver.url(), "events": events},
                                            actor="test")
    receiver.secret = sub["secret"]
    return sub


def deliveries(conn, subscription_id: int | None) -> list[dict]:
    return conn.execute(
        "SELECT d.*, e.webhook_id, e.type, e.body FROM event_deliveries d JOIN outgoing_events e ON e.id = d.event_id"
        " WHERE d.subscription_id IS NOT DISTINCT FROM %s ORDER BY d.id", (subscription_id,)).fetchall()


def events(conn) -> list[dict]:
    return conn.execute("SELECT type, grant_id, body FROM outgoing_events ORDER BY id").fetchall()

"""Why per employee, the expiring and coverage reports (docs/admin-api.md, "Reports")."""
from __future__ import annotations

from datetime import date, timedelta

import psycopg

from service.platform import db
from service.platform.errors import NotFound
from service.platform.paging import Page, page_of

# The coverage report's window: "expiring" means ending within this many days.
COVERAGE_EXPIRING_DAYS = 90
# The coverage summaries keep each day from this many days before today on (a margin for a
# clock or time zone that differs a little between processes); older days are folded.
COMPACT_MARGIN_DAYS = 2


def employee_results(conn: psycopg.Connection, employee_id: int, *, limit: int | None,
                     offset: int) -> Page:
    """Every result kept for the employee's email, with its outcome for each competence."""
    if not conn.execute(db.q("employee_exists"), {"employee_id": employee_id}).fetchone()["found"]:
        raise NotFound(f"employee {employee_id} does not exist")
    return page_of(conn, "employee_results", {"employee_id": employee_id}, limit, offset)


def expiring(conn: psycopg.Connection, *, today: date, within_days: int,
             competence_id: int | None, limit: int | None, offset: int) -> Page:
    """Grants active today that end within `within_days` days and are not renewed."""
    return page_of(conn, "report_expiring", {"today": today, "within_days": within_days,
                                             "competence_id": competence_id}, limit, offset)


def coverage(conn: psycopg.Connection, *, today: date, limit: int | None, offset: int) -> Page:
    """Per competence: employees holding it active, expiring soon, and expired not renewed."""
    return page_of(conn, "report_coverage",
                   {"today": today, "within_days": COVERAGE_EXPIRING_DAYS}, limit, offset)


def compact_coverage(conn: psycopg.Connection, *, today: date) -> None:
    """Fold the coverage summaries' rows of days no report asks about any more."""
    conn.execute(db.q("coverage_compact"), {"cutoff": today - timedelta(days=COMPACT_MARGIN_DAYS)})

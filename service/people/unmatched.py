"""Kept results that match no employee, grouped by email."""
from __future__ import annotations

import psycopg

from service.people.email import normalize_email
from service.platform.paging import Page, page_of


def unmatched_report(conn: psycopg.Connection, *, email: str | None, limit: int, offset: int) -> Page:
    """Kept results with no matching employee, grouped by normalised email."""
    return page_of(conn, "admin_unmatched", {"email": normalize_email(email) if email else None},
                 limit, offset)

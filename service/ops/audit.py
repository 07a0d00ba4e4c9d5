"""The audit log: every change, written in the transaction that makes it (rule 8)."""
from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal

from psycopg.types.json import Jsonb
import psycopg

from service.platform import db
from service.platform.paging import Page, page_of

log = logging.getLogger(__name__)


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


def audit_rows(conn: psycopg.Connection, *, actor: str | None, action: str | None,
               target: str | None, limit: int, offset: int) -> Page:
    """The audit log, newest first."""
    return page_of(conn, "admin_audit", {"actor": actor, "action": action, "target": target},
                 limit, offset)

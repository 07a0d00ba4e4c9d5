"""One page of a list, and the pattern a text search uses."""
from __future__ import annotations

from dataclasses import dataclass

import psycopg

from service.platform import db


@dataclass
class Page:
    """One page of a list and the total number of items."""

    items: list[dict]
    total: int


def page_of(conn: psycopg.Connection, name: str, params: dict, limit: int, offset: int) -> Page:
    total = conn.execute(db.q(f"{name}_count"), params).fetchone()["total"]
    if offset >= total:
        return Page([], total)
    rows = conn.execute(db.q(f"{name}_page"), {**params, "limit": limit, "offset": offset}).fetchall()
    return Page(rows, total)


def like_pattern(text: str) -> str:
    """Return an ILIKE pattern matching `text` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"

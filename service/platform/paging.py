"""One page of a list, and the pattern a text search uses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import psycopg
from psycopg.rows import dict_row

from service.platform import db

# Rows a server-side cursor fetches at a time for a whole list (an export).
STREAM_ROWS = 2000


@dataclass
class Page:
    """One page of a list and the total number of items."""

    items: Iterable[dict]
    total: int | None


def page_of(conn: psycopg.Connection, name: str, params: dict, limit: int | None, offset: int) -> Page:
    """One page of the named list (`{name}_count`, `{name}_page`).

    `limit` None asks for the whole list (an export, docs/admin-api.md "Exports"): its rows
    come from a server-side cursor as they are read, and the total is not counted.
    """
    if limit is None:
        return Page(stream(conn, f"{name}_page", {**params, "limit": None, "offset": 0}), None)
    total = conn.execute(db.q(f"{name}_count"), params).fetchone()["total"]
    if offset >= total:
        return Page([], total)
    rows = conn.execute(db.q(f"{name}_page"), {**params, "limit": limit, "offset": offset}).fetchall()
    return Page(rows, total)


def stream(conn: psycopg.Connection, name: str, params: dict) -> Iterator[dict]:
    """Yield every row of a named query through a server-side cursor, STREAM_ROWS at a time."""
    with conn.cursor(name=f"stream_{name}", row_factory=dict_row) as cursor:
        cursor.itersize = STREAM_ROWS
        cursor.execute(db.q(name), params)
        yield from cursor


def like_pattern(text: str) -> str:
    """Return an ILIKE pattern matching `text` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"

"""Numbered SQL migrations, applied once each, in order, under an advisory lock."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import tuple_row

from service.platform import db

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any fixed number: only one migrator at a time, however many releases start together.
_LOCK_KEY = 7_413_001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    """Return the migrations shipped with the code, in order."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        found.append(Migration(int(number), name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a number")
    return found


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(db.q("migrations_ensure_table"))


def applied(conn: psycopg.Connection) -> dict[int, str]:
    """Return {version: checksum} of the applied migrations (empty if none)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        (ok,) = cur.execute(db.q("migrations_table_exists")).fetchone()
        if not ok:
            return {}
        return dict(cur.execute(db.q("migrations_applied")).fetchall())


def pending(conn: psycopg.Connection) -> list[Migration]:
    """Return the migrations not applied yet."""
    done = applied(conn)
    return [m for m in available() if m.version not in done]


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply what is pending; return what was applied (empty when up to date)."""
    conn.autocommit = True
    conn.execute(db.q("migrations_lock"), {"key": _LOCK_KEY})
    try:
        with conn.transaction():
            _ensure_table(conn)
        done = applied(conn)
        for m in available():
            if m.version in done and done[m.version] != m.checksum:
                raise RuntimeError(
                    f"migration {m.version:04d}_{m.name} was changed after it was applied; "
                    "add a new migration instead"
                )
        todo = [m for m in available() if m.version not in done]
        for m in todo:
            with conn.transaction():
                conn.execute(m.sql)
                conn.execute(db.q("migrations_record"),
                             {"version": m.version, "name": m.name, "checksum": m.checksum})
            log.info("applied migration %04d_%s", m.version, m.name)
        return todo
    finally:
        conn.execute(db.q("migrations_unlock"), {"key": _LOCK_KEY})

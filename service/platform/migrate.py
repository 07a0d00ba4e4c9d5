"""Numbered SQL migrations, applied once each, in order, under an advisory lock."""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import tuple_row

from service.platform import db

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any fixed number: only one migrator at a time, however many releases start together.
_LOCK_KEY = 7_413_001


# What databases migrated before comments were left out of the checksum recorded: the SHA-256
# of each released migration's whole text, as released.
RELEASED_TEXT_CHECKSUMS = {
    1: ("408c704274492e073a68270dad5d0cdca6083c1b8044ba43d5dce1857ad8bbb8",),
    2: ("09ea087c616f28ff75b9dc9a92bb3fc013780bdf30c2710505a6f177d50ec8ed",),
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """The hash of what the migration does: its statements, its comments left out (a
        comment may be corrected after release; a statement never)."""
        return hashlib.sha256(_statements(self.sql).encode()).hexdigest()

    def applied_as(self, recorded: str) -> bool:
        """Tell whether a recorded checksum is this migration's: of its statements, or of the
        whole text as it was released (checksums were of the whole text before)."""
        return recorded == self.checksum or recorded in RELEASED_TEXT_CHECKSUMS.get(self.version, ())


def _statements(sql: str) -> str:
    """The SQL without `--` comments (outside string literals) and without blank lines."""
    kept = []
    for line in sql.splitlines():
        cut = len(line)
        for match in re.finditer("--", line):
            if line[:match.start()].count("'") % 2 == 0:
                cut = match.start()
                break
        line = line[:cut].rstrip()
        if line:
            kept.append(line)
    return "\n".join(kept)


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
            if m.version in done and not m.applied_as(done[m.version]):
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

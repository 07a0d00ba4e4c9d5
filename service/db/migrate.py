"""Numbered SQL migrations, applied once each, in order, under an advisory lock."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import tuple_row

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
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def applied(conn: psycopg.Connection) -> dict[int, str]:
    """Return {version: checksum} of the applied migrations (empty if none)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        (ok,) = cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not ok:
            return {}
        return dict(cur.execute("SELECT version, checksum FROM schema_migrations").fetchall())


def pending(conn: psycopg.Connection) -> list[Migration]:
    """Return the migrations not applied yet."""
    done = applied(conn)
    return [m for m in available() if m.version not in done]


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply what is pending; return what was applied (empty when up to date)."""
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
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
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
            log.info("applied migration %04d_%s", m.version, m.name)
        rekey_emails(conn)
        return todo
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


# The version of the email key rule; a new one makes `migrate` compute every key again.
EMAIL_KEY_RULE = "rule 2: trimmed, NFC, simple lower case; look-alikes match nobody"


def rekey_emails(conn: psycopg.Connection) -> int:
    """Make the email keys of employees and results again, once per key rule (in Python: the
    rule is not expressible in SQL); return how many changed.

    An employee whose new key another employee already holds keeps the old key, with a
    warning naming both ids, for an administrator to correct."""
    from psycopg.types.json import Jsonb

    from service import db
    from service.domain.rules import normalize_email

    changed = 0
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        mark = {"name": "email_keys", "cursor": Jsonb(EMAIL_KEY_RULE)}
        if cur.execute(db.q("rekey_take_mark"), mark).fetchone() is None:
            return 0  # the keys follow this rule already
        for row_id, email, old in cur.execute(db.q("rekey_employees_to_check")).fetchall():
            key = normalize_email(email)
            if key == old:
                continue
            try:
                with conn.transaction():
                    cur.execute(db.q("rekey_employee"), {"id": row_id, "key": key})
                changed += 1
            except psycopg.errors.UniqueViolation:
                log.warning("employee %s keeps its old email key: another employee has the new one", row_id)
        ids, keys = [], []
        for row_id, email, old in cur.execute(db.q("rekey_results_to_check")).fetchall():
            key = normalize_email(email)
            if key != old:
                ids.append(row_id)
                keys.append(key)
        if ids:
            cur.execute(db.q("rekey_results"), {"ids": ids, "keys": keys})
        changed += len(ids)
    if changed:
        log.info("email keys made again under the current rule: %d changed", changed)
    return changed

"""Email keys made again under the current rule (docs/rules.md, rule 2), once per rule.

`competence-bridge migrate` runs it after the migrations: keys stored by an earlier rule (case
folding keyed `straße` as `strasse`) would otherwise still match an impostor's address.
"""
from __future__ import annotations

import logging

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from service.people.email import normalize_email
from service.platform import db

log = logging.getLogger(__name__)


# The version of the email key rule; a new one makes `migrate` compute every key again.
EMAIL_KEY_RULE = "rule 2: trimmed, NFC, simple lower case; look-alikes match nobody"


def rekey_emails(conn: psycopg.Connection) -> int:
    """Make the email keys of employees and results again, once per key rule (in Python: the
    rule is not expressible in SQL); return how many changed.

    An employee whose new key another employee already holds keeps the old key, with a
    warning naming both ids, for an administrator to correct."""
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
                log.warning("employee %s keeps its old matching key: another employee holds the new one", row_id)
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
        log.info("matching keys made again under the current rule: %d changed", changed)
    return changed

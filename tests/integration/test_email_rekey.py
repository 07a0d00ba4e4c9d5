"""Email keys stored under the old rule (case folding) are made again by `migrate`, once: an
employee `straße@` keyed `strasse@` before can no longer be matched by `strasse@`."""
from __future__ import annotations

import pytest

from service.people.rekey import rekey_emails
from service.platform.migrate import migrate
from tests.integration.test_pipeline import seed_links

pytestmark = pytest.mark.integration


def test_old_keys_are_made_again_once_and_an_impostor_no_longer_matches(conn):
    seed_links(conn)
    old = {  # what the case-folding rule stored
        "Straße@kommun.se": "strasse@kommun.se",
        "\u212aalle@kommun.se": "kalle@kommun.se",  # the Kelvin sign
        "Åsa@kommun.se": "åsa@kommun.se",  # the same under both rules
    }
    for email, key in old.items():
        conn.execute("INSERT INTO employees (email, email_normalized) VALUES (%s, %s)", (email, key))
    conn.execute("INSERT INTO results (id, course_id, email, email_normalized, passed, completed_at, source)"
                 " VALUES ('r-1', 4711, 'STRASSE@kommun.se', 'strasse@kommun.se', true, now(), 'webhook'),"
                 "        ('r-2', 4711, 'ſven@kommun.se', 'sven@kommun.se', true, now(), 'webhook')")
    conn.execute("DELETE FROM job_cursors")  # no rekey mark: the keys predate the current rule

    migrate(conn)
    rekey_emails(conn)  # as `competence-bridge migrate` does after the migrations
    keys = {r["email"]: r["email_normalized"] for r in
            conn.execute("SELECT email, email_normalized FROM employees").fetchall()}
    assert keys["Straße@kommun.se"] == "straße@kommun.se"
    assert keys["\u212aalle@kommun.se"].startswith("(matches nobody) ")
    assert keys["Åsa@kommun.se"] == "åsa@kommun.se"
    results = {r["id"]: r["email_normalized"] for r in
               conn.execute("SELECT id, email_normalized FROM results").fetchall()}
    assert results["r-1"] == "strasse@kommun.se"  # ASCII: unchanged, and no longer Straße's
    assert results["r-2"].startswith("(matches nobody) ")

    conn.execute("UPDATE employees SET email_normalized = 'strasse@kommun.se' WHERE email = 'Straße@kommun.se'")
    assert rekey_emails(conn) == 0  # once per rule: the mark says it was done

"""A migration's checksum covers its statements, not its comments: a released migration's
comments may be corrected, its statements never; databases that recorded the whole text's
checksum of a released migration still migrate."""
from __future__ import annotations

import dataclasses

import pytest

from service.platform import db
from service.platform import migrate as migrations

pytestmark = pytest.mark.integration


def test_comments_do_not_count_and_statements_do():
    m = migrations.Migration(9, "x", "-- why\nCREATE TABLE t (a int);  -- a note\n\nSELECT '--kept';\n")
    edited = dataclasses.replace(m, sql="-- why, said better\nCREATE TABLE t (a int);\nSELECT '--kept';\n")
    changed = dataclasses.replace(m, sql="CREATE TABLE t (a bigint);\nSELECT '--kept';\n")
    quoted = dataclasses.replace(m, sql="CREATE TABLE t (a int);\nSELECT '--other';\n")
    assert edited.checksum == m.checksum
    assert changed.checksum != m.checksum and quoted.checksum != m.checksum



def test_a_database_migrated_before_keeps_migrating_and_a_changed_statement_is_refused(scratch_url):
    with db.connect(scratch_url, autocommit=True) as conn:
        migrations.migrate(conn)
        released = migrations.RELEASED_TEXT_CHECKSUMS[1][0]
        conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = 1", (released,))
        assert migrations.migrate(conn) == []  # the checksum it recorded on release is its own
        conn.execute("UPDATE schema_migrations SET checksum = 'something else' WHERE version = 1")
        with pytest.raises(RuntimeError, match="0001_initial was changed"):
            migrations.migrate(conn)

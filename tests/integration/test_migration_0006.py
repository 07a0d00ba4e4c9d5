"""Migration 0006 (service/platform/migrations/0006_backfill_counters.sql): links counted the old way
(granted = passed results that earn it, failed = everything else) get the new counters, and
processed stays their sum."""
from __future__ import annotations


import psycopg
import pytest
from psycopg.rows import dict_row

from service.platform.migrate import available

pytestmark = pytest.mark.integration



def test_old_counters_map_to_the_contract_words_and_keep_their_sum(scratch_url):
    migrations = {m.version: m for m in available()}
    with psycopg.connect(scratch_url, autocommit=True, row_factory=dict_row) as conn:
        for version in sorted(v for v in migrations if v < 6):
            conn.execute(migrations[version].sql)
        conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (1, 'a', 14), (2, 'b', 14), (3, 'c', 14)")
        conn.execute("INSERT INTO competences (name, kind) VALUES ('x', 'main_group')")
        # done (breakdown kept), running (only its unreadable records), pending
        conn.execute(
            "INSERT INTO links (course_id, competence_id, created_by, backfill_state, backfill_total,"
            " backfill_processed, backfill_granted, backfill_unmatched, backfill_failed,"
            " backfill_checkpoint) VALUES"
            " (1, 1, 't', 'done', 100, 100, 60, 10, 30, '{\"grants_created\": 45,"
            "   \"failed_not_passed\": 24, \"failed_course_not_published\": 4, \"failed_unreadable\": 2}'),"
            " (2, 1, 't', 'running', 500, 40, 20, 5, 15, '{\"grants_created\": 20, \"skipped\": 3}'),"
            " (3, 1, 't', 'pending', 0, 0, 0, 0, 0, NULL)")
        conn.execute(migrations[6].sql)
        rows = conn.execute(
            "SELECT course_id, backfill_processed AS processed, backfill_granted AS granted,"
            " backfill_already_held AS already_held, backfill_not_passed AS not_passed,"
            " backfill_not_published AS not_published, backfill_unmatched AS unmatched,"
            " backfill_errors AS errors FROM links ORDER BY course_id").fetchall()
        columns = {r["column_name"] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'links'")}
    assert rows == [
        {"course_id": 1, "processed": 100, "granted": 45, "already_held": 15, "not_passed": 28,
         "not_published": 4, "unmatched": 10, "errors": 2},
        {"course_id": 2, "processed": 40, "granted": 20, "already_held": 0, "not_passed": 12,
         "not_published": 0, "unmatched": 5, "errors": 3},
        {"course_id": 3, "processed": 0, "granted": 0, "already_held": 0, "not_passed": 0,
         "not_published": 0, "unmatched": 0, "errors": 0},
    ]
    for r in rows:
        assert r["processed"] == r["granted"] + r["already_held"] + r["not_passed"] + r["unmatched"] + r["errors"]
    assert "backfill_failed" not in columns

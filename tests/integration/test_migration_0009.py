"""Migration 0009 (service/platform/migrations/0009_grant_periods.sql): renew_on_completion becomes
renewal_window_days, revocations become revoked grant rows under the grant's own id, and the
grant step of the new schema works on the migrated data."""
from __future__ import annotations

from datetime import date

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from service.platform.migrate import available

pytestmark = pytest.mark.integration



def test_renewal_and_revocations_move_to_the_new_columns(scratch_url):
    migrations = {m.version: m for m in available()}
    with psycopg.connect(scratch_url, autocommit=True, row_factory=dict_row) as conn:
        for version in sorted(v for v in migrations if v < 9):
            conn.execute(migrations[version].sql)
        conn.execute("INSERT INTO competences (id, name, kind) VALUES (1, 'M', 'main_group')")
        conn.execute("INSERT INTO competences (id, parent_id, name, kind) VALUES (2, 1, 'G', 'group')")
        conn.execute(
            "INSERT INTO competences (id, parent_id, name, kind, default_valid_days, renew_on_completion)"
            " VALUES (3, 2, 'renews', 'competence', 730, true), (4, 2, 'waits', 'competence', 365, false),"
            "        (5, 2, 'forever', 'competence', NULL, true)")
        conn.execute("INSERT INTO employees (id, email, email_normalized) VALUES (1, 'a@x.se', 'a@x.se')")
        conn.execute("INSERT INTO grants (id, employee_id, competence_id, valid_from, valid_to, source, result_id)"
                     " VALUES (10, 1, 3, '2026-01-01', '2027-12-31', 'webhook', 'r-live')")
        # grant 7 was revoked (deleted, remembered, audited with what it was); grant 8 too,
        # without an audit row (evidence partly unknown)
        conn.execute(
            "INSERT INTO grant_revocations (grant_id, employee_id, competence_id, result_id, valid_from,"
            " valid_to, reason, revoked_by, revoked_at) VALUES"
            " (7, 1, 4, 'r-gone', '2025-01-01', '2026-01-01', 'wrong person', 'admin', '2025-03-01T10:00:00Z'),"
            " (8, 1, 3, NULL, '2024-01-01', '2025-12-31', 'typo', 'admin', '2025-02-01T10:00:00Z')")
        conn.execute("INSERT INTO audit_log (actor, action, target, before, after) VALUES"
                     " ('admin', 'grant.revoke', 'grant:7', %s, %s)",
                     (Jsonb({"id": 7, "source": "backfill", "course_id": 4711, "webhook_id": None,
                             "link_id": 3, "created_at": "2025-01-02T08:00:00+00:00"}),
                      Jsonb({"reason": "wrong person"})))
        conn.execute("SELECT setval(pg_get_serial_sequence('grants', 'id'), 10)")
        conn.execute(migrations[9].sql)

        windows = {r["id"]: r["renewal_window_days"] for r in conn.execute(
            "SELECT id, renewal_window_days FROM competences WHERE kind = 'competence'")}
        assert windows == {3: 730, 4: None, 5: None}
        columns = {r["column_name"] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'competences'")}
        assert "renew_on_completion" not in columns
        rows = conn.execute(
            "SELECT id, competence_id, valid_from, source, course_id, link_id, result_id, revoked_reason,"
            " revoked_by, revoked_at IS NOT NULL AS revoked,"
            " grant_status(valid_from, valid_to, revoked_at, '2026-12-01') AS status"
            " FROM grants ORDER BY id").fetchall()
        assert rows == [
            {"id": 7, "competence_id": 4, "valid_from": date(2025, 1, 1), "source": "backfill",
             "course_id": 4711, "link_id": 3, "result_id": "r-gone", "revoked_reason": "wrong person",
             "revoked_by": "admin", "revoked": True, "status": "revoked"},
            {"id": 8, "competence_id": 3, "valid_from": date(2024, 1, 1), "source": "manual",
             "course_id": None, "link_id": None, "result_id": None, "revoked_reason": "typo",
             "revoked_by": "admin", "revoked": True, "status": "revoked"},
            {"id": 10, "competence_id": 3, "valid_from": date(2026, 1, 1), "source": "webhook",
             "course_id": None, "link_id": None, "result_id": "r-live", "revoked_reason": None,
             "revoked_by": None, "revoked": False, "status": "active"},
        ]
        # the revocations still read as such (the view), and still bar the revoked result
        assert [r["grant_id"] for r in conn.execute("SELECT grant_id FROM grant_revocations ORDER BY 1")] == [7, 8]
        assert conn.execute("SELECT revocation_bars(result_id, revoked_at, 'r-gone', now())"
                            " AS bars FROM grant_revocations WHERE grant_id = 7").fetchone()["bars"]
        # a second period of competence 3 now fits; an overlapping one is refused
        conn.execute("INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source)"
                     " VALUES (1, 3, '2028-01-01', '2029-12-31', 'webhook')")
        with pytest.raises(psycopg.errors.ExclusionViolation):
            conn.execute("INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source)"
                         " VALUES (1, 3, '2027-12-31', NULL, 'webhook')")
        assert conn.execute("SELECT nextval(pg_get_serial_sequence('grants', 'id')) AS n").fetchone()["n"] > 10
        assert not conn.execute("SELECT 1 FROM pg_proc WHERE proname = 'renews'").fetchall()

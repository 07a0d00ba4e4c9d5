"""Migration 0014 (service/platform/migrations/0014_tenants.sql): a deployment's data becomes the
tenant `default`'s, and the grant step works on it as the application role."""
from __future__ import annotations


import psycopg
import pytest
from psycopg.rows import dict_row

from service.grants import pipeline
from service.platform import db
from service.platform.migrate import available

pytestmark = pytest.mark.integration



def test_existing_data_becomes_the_default_tenants(scratch_url):
    migrations = {m.version: m for m in available()}
    with psycopg.connect(scratch_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(db.q("migrations_ensure_table"))
        for version in sorted(v for v in migrations if v < 14):
            conn.execute(migrations[version].sql)
        conn.execute("INSERT INTO competences (id, name, kind) VALUES (1, 'M', 'main_group')")
        conn.execute("INSERT INTO competences (id, parent_id, name, kind) VALUES (2, 1, 'G', 'group')")
        conn.execute("INSERT INTO competences (id, parent_id, name, kind, default_valid_days)"
                     " VALUES (3, 2, 'HLR', 'competence', 730)")
        conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (4711, 'HLR vuxen', 14)")
        conn.execute("INSERT INTO links (course_id, competence_id, created_by) VALUES (4711, 3, 'x')")
        conn.execute("INSERT INTO employees (email, email_normalized) VALUES ('a@x.se', 'a@x.se')")
        conn.execute("INSERT INTO api_tokens (name, token_hash, permissions) VALUES ('t', 'h', '{}')")
        conn.execute(migrations[14].sql)

        for table in ("competences", "courses", "links", "employees", "api_tokens"):
            tenants = {r["tenant_id"] for r in conn.execute(f"SELECT tenant_id FROM {table}")}
            assert tenants == {1}, table
        assert conn.execute("SELECT id, slug FROM tenants").fetchall() == [{"id": 1, "slug": "default"}]
        # The same course id and email are free in another tenant, not in the same one.
        conn.execute("INSERT INTO tenants (slug, name) VALUES ('b', 'B')")
        conn.execute("INSERT INTO courses (tenant_id, id, name, guide_type) VALUES (2, 4711, 'K', 14)")
        conn.execute("INSERT INTO employees (tenant_id, email, email_normalized)"
                     " VALUES (2, 'a@x.se', 'a@x.se')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (4711, 'K', 14)")

    # The grant step of the new code on the migrated data, as the application role would run it.
    with db.tenant_connection(scratch_url, 1) as conn:
        event = {"type": "course.completed", "timestamp": "2026-11-29T11:00:00+00:00",
                 "webhook_id": "w-1", "received_at": "2026-11-29T11:00:01+00:00", "tenant": 1,
                 "course": {"id": 4711, "name": "HLR vuxen", "guide_type": 14},
                 "result": {"id": "r-1", "email": "a@x.se", "first_name": None, "last_name": None,
                            "passed": True, "score": 90, "completed_at": "2026-11-29T11:00:00+00:00"}}
        out = pipeline.process_events(conn, [event], tz="Europe/Stockholm")
        conn.commit()
        assert out.grants_created == 1
        grants = conn.execute("SELECT tenant_id, competence_id, valid_from::text FROM grants").fetchall()
        assert grants == [{"tenant_id": 1, "competence_id": 3, "valid_from": "2026-11-29"}]

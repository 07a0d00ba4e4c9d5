"""The foundation: migrations, schema constraints, and a round trip on the real broker."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from service.platform import db, messaging
from service.platform.migrate import available
from service.platform.messaging import Publisher
from tests.conftest import ADMIN_URL

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _schema_snapshot(url: str) -> list[tuple]:
    with psycopg.connect(url) as c:
        return c.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall() + c.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE connamespace = 'public'::regnamespace ORDER BY 1"
        ).fetchall() + c.execute("SELECT indexdef, '' FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1").fetchall()


def test_migrate_twice_the_second_run_changes_nothing_and_says_so():
    name = f"cb_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
            first = _cli("migrate", env_extra={"DATABASE_URL": url, "DEMO": "1"})
            assert first.returncode == 0, first.stderr
            assert f"{len(available())} migration(s) applied" in first.stdout
            snapshot = _schema_snapshot(url)
            assert any(row[0] == "grants" for row in snapshot)
            second = _cli("migrate", env_extra={"DATABASE_URL": url, "DEMO": "1"})
            assert second.returncode == 0, second.stderr
            assert "nothing to apply" in second.stdout
            assert _schema_snapshot(url) == snapshot
        finally:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            admin.execute(f'DROP DATABASE "{name}"')


def _seed(conn):
    conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (1, 'Kurs', 14)")
    conn.execute("INSERT INTO competences (id, name, kind) VALUES (1, 'M', 'main_group')")
    conn.execute("INSERT INTO competences (id, parent_id, name, kind) VALUES (2, 1, 'G', 'group')")
    conn.execute("INSERT INTO competences (id, parent_id, name, kind) VALUES (3, 2, 'C', 'competence')")
    conn.execute("INSERT INTO employees (id, email, email_normalized) VALUES (1, 'A@x.se', 'a@x.se')")


def test_grants_of_the_same_employee_and_competence_are_periods_that_never_overlap(conn):
    # Changed meaning (grants as periods): several grants over time, never overlapping, and a
    # revoked one does not count.
    _seed(conn)
    insert = ("INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source)"
              " VALUES (1, 3, %s, %s, 'webhook')")
    conn.execute(insert, ("2024-01-01", "2024-12-31"))
    conn.execute(insert, ("2025-01-01", "2025-12-31"))  # the next period
    with conn.transaction(), pytest.raises(psycopg.errors.ExclusionViolation, match="grants_periods_excl"):
        conn.execute(insert, ("2025-12-31", "2026-12-31"))  # one day in common
    with conn.transaction(), pytest.raises(psycopg.errors.ExclusionViolation, match="grants_periods_excl"):
        conn.execute(insert, ("2023-01-01", None))  # never ends: overlaps both
    conn.execute("UPDATE grants SET revoked_at = now(), revoked_reason = 'x', revoked_by = 't'"
                 " WHERE valid_from = '2025-01-01'")
    conn.execute(insert, ("2025-06-01", "2026-06-01"))  # where the revoked one was
    assert conn.execute("SELECT count(*) AS n FROM grants").fetchone()["n"] == 3
    # the same days of another competence, of another employee, and before 1900: all allowed
    conn.execute("INSERT INTO competences (id, parent_id, name, kind) VALUES (4, 2, 'D', 'competence')")
    conn.execute("INSERT INTO employees (id, email, email_normalized) VALUES (2, 'B@x.se', 'b@x.se')")
    others = ("INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source)"
              " VALUES (%s, %s, '2024-01-01', NULL, 'manual')")
    conn.execute(others, (1, 4))
    conn.execute(others, (2, 3))
    conn.execute(insert, ("1850-01-01", "1850-12-31"))
    assert conn.execute("SELECT count(*) AS n FROM grants").fetchone()["n"] == 6


def test_a_second_link_of_the_same_pair_is_refused(conn):
    _seed(conn)
    insert = "INSERT INTO links (course_id, competence_id, created_by) VALUES (1, 3, 'test')"
    conn.execute(insert)
    with pytest.raises(psycopg.errors.UniqueViolation, match="links_course_competence_key"):
        conn.execute(insert)


def test_a_result_id_cannot_be_stored_twice(conn):
    _seed(conn)
    insert = ("INSERT INTO results (id, course_id, email, email_normalized, passed, completed_at, source)"
              " VALUES ('r-1', 1, 'a@x.se', 'a@x.se', true, now(), 'webhook')")
    conn.execute(insert)
    with pytest.raises(psycopg.errors.UniqueViolation, match="results_pkey"):
        conn.execute(insert)


def test_two_employees_with_the_same_normalised_email_are_refused(conn):
    _seed(conn)
    with pytest.raises(psycopg.errors.UniqueViolation, match="employees_email_normalized_key"):
        conn.execute("INSERT INTO employees (id, email, email_normalized) VALUES (2, 'a@X.se ', 'a@x.se')")


def test_the_tree_shape_is_checked(conn):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO competences (name, kind) VALUES ('orphan', 'competence')")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO competences (name, kind, default_valid_days) VALUES ('M', 'main_group', 0)")


def test_publish_and_consume_on_the_real_broker(settings):
    publisher = Publisher(settings)
    publisher.publish({"webhook_id": "w-1", "type": "course.completed"}, headers={"webhook-id": "w-1"})
    publisher.close()
    with messaging.connection(settings) as broker:
        queue = messaging.topology(settings).queue(messaging.EVENTS)(broker.channel())
        _, depth, _ = queue.queue_declare(passive=True)
        assert depth == 1
        message = queue.get(no_ack=False)
        assert message.decode() == {"webhook_id": "w-1", "type": "course.completed"}
        assert message.headers["webhook-id"] == "w-1"
        assert message.properties["delivery_mode"] == 2
        message.ack()
        assert queue.get() is None


def test_pooled_connections_plan_with_ssd_costs_and_keep_the_urls_own_options(database_url):
    from service.platform import db

    pool = db.make_pool(database_url, name="options-test")
    try:
        with pool.connection() as conn:
            assert conn.execute("SHOW random_page_cost").fetchone()["random_page_cost"] == "1.1"
            conn.execute("RESET random_page_cost")  # the session's default is the option's value
            assert conn.execute("SHOW random_page_cost").fetchone()["random_page_cost"] == "1.1"
    finally:
        pool.close()
    sep = "&" if "?" in database_url else "?"
    with db.connect(f"{database_url}{sep}options=-c%20work_mem%3D5MB") as conn:
        settings = conn.execute("SELECT current_setting('work_mem') AS w, "
                                "current_setting('random_page_cost') AS r").fetchone()
        assert (settings["w"], settings["r"]) == ("5MB", "1.1")


def test_results_are_looked_up_by_email_only_through_the_unmatched_index(conn):
    # 0002 dropped the full email index (one entry per stored result, read by no query); every
    # lookup of results by email asks for unmatched ones, which the partial index serves.
    names = {r["indexname"] for r in conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'results'")}
    assert "results_email_normalized_idx" not in names
    assert "results_unmatched_idx" in names
    conn.execute("SET enable_seqscan = off")
    for name, params in [("unmatched_result_ids_for_emails", {"emails": ["a@x.se"]})]:
        plan = "\n".join(r["QUERY PLAN"] for r in conn.execute("EXPLAIN " + db.q(name), params))
        assert "results_unmatched_idx" in plan, (name, plan)

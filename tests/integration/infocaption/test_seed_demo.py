"""`seed-demo` seeds once and never undoes an admin's change (real PostgreSQL)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from workers.cli import main
from service.catalog import links as catalog_links
from service.demo.commands import seed_demo_data

pytestmark = pytest.mark.integration


def count(conn, table: str) -> int:
    return conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]  # noqa: S608 - a test's own table names


def test_a_link_an_admin_deleted_is_not_created_again(conn):
    with conn.transaction():
        assert seed_demo_data(conn, seed=42, courses=8, employees=30) == {
            "employees": 30, "competences": 7, "links": 4}
    link = conn.execute("SELECT id, course_id, competence_id FROM links ORDER BY id LIMIT 1").fetchone()
    with conn.transaction():
        catalog_links.delete_link(conn, link["id"], actor="admin")
    assert count(conn, "links") == 3

    with conn.transaction():
        again = seed_demo_data(conn, seed=42, courses=8, employees=30)
    assert again["links"] == again["employees"] == again["competences"] == 0
    assert again["skipped"]
    assert count(conn, "links") == 3
    assert not conn.execute("SELECT 1 FROM links WHERE course_id = %s AND competence_id = %s",
                            (link["course_id"], link["competence_id"])).fetchone()
    # a seed with other numbers changes nothing either: the database is seeded once
    with conn.transaction():
        assert seed_demo_data(conn, seed=7, courses=8, employees=50)["skipped"]
    assert (count(conn, "links"), count(conn, "employees")) == (3, 30)


def test_a_database_with_data_but_no_mark_is_left_as_it_is(conn):
    # e.g. seeded by an earlier version, then changed by an admin: its links all deleted
    conn.execute("INSERT INTO employees (email, email_normalized) VALUES ('a@kommun.se', 'a@kommun.se')")
    with conn.transaction():
        summary = seed_demo_data(conn, seed=42, courses=8, employees=30)
    assert summary["skipped"] and summary["links"] == 0
    assert (count(conn, "links"), count(conn, "employees"), count(conn, "competences")) == (0, 1, 0)


def test_the_command_says_so_the_second_time(conn, database_url):
    env = {"DATABASE_URL": database_url, "DEMO": "1", "LOG_LEVEL": "WARNING"}
    first = CliRunner().invoke(main, ["seed-demo", "--employees", "20"], env=env)
    assert first.exit_code == 0, first.output
    assert "demo seeded: 20 new employee(s)" in first.output
    link = conn.execute("SELECT id FROM links ORDER BY id LIMIT 1").fetchone()
    with conn.transaction():
        catalog_links.delete_link(conn, link["id"], actor="admin")

    second = CliRunner().invoke(main, ["seed-demo", "--employees", "20"], env=env)
    assert second.exit_code == 0, second.output
    assert "seeded already" in second.output
    assert count(conn, "links") == 3

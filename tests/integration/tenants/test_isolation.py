"""Tenants isolated by PostgreSQL itself (docs/tenants.md, "Isolation"): the application role
without a tenant reads nothing, a tenant cannot write another's rows, and two tenants with the
same course ids and the same emails, driven at once, each agree with their own model."""
from __future__ import annotations

import threading

import psycopg
import pytest

from service.platform import db
from tests.integration.tenants.conftest import SECOND
from tests.integration.test_model_check import run_model_check

pytestmark = pytest.mark.integration

# Tables of the platform: the outbox (one relay for all; each row says whose it is), the
# tenants themselves, the embedded queue, the migrations, and the console's failed sign-ins
# (a failure names no tenant: the user name tried may be nobody's).
PLATFORM_TABLES = {"outbox", "tenants", "queue_messages", "schema_migrations",
                   "console_sign_in_failures"}


def tenant_tables(conn) -> list[dict]:
    return conn.execute(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
        "       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid"
        "                  AND a.attname = 'tenant_id' AND NOT a.attisdropped) AS has_tenant"
        "  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
        " ORDER BY c.relname").fetchall()


def drive_both(database_url: str, second_id: int, n: int) -> dict:
    """The same stream (the same course ids, the same emails) in both tenants at once."""
    counts, failures = {}, []

    def drive(name: str, tenant_id: int, offset: int) -> None:
        try:
            with db.tenant_connection(database_url, tenant_id, autocommit=True) as c:
                counts[name] = run_model_check(c, n, seed=11, competence_offset=offset)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append((name, exc))

    threads = [threading.Thread(target=drive, args=("default", 1, 0)),
               threading.Thread(target=drive, args=(SECOND, second_id, 1000))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    return counts


def test_two_tenants_with_the_same_courses_and_emails_each_agree_with_their_model(
        conn, database_url, second_tenant):
    counts = drive_both(database_url, second_tenant.id, 1500)
    assert counts["default"]["grants"] > 50 and counts[SECOND]["grants"] > 50
    # The same emails are two people: each tenant holds its own employees and grants.
    per_tenant = {r["tenant_id"]: r for r in conn.execute(
        "SELECT tenant_id, count(*) AS n, count(DISTINCT email_normalized) AS emails"
        "  FROM employees GROUP BY tenant_id").fetchall()}
    assert per_tenant[1]["emails"] == per_tenant[second_tenant.id]["emails"] > 0
    crossed = conn.execute(
        "SELECT count(*) AS n FROM grants g JOIN employees e ON e.id = g.employee_id"
        "  JOIN competences k ON k.id = g.competence_id"
        " WHERE g.tenant_id <> e.tenant_id OR g.tenant_id <> k.tenant_id").fetchone()["n"]
    assert crossed == 0


def test_the_application_role_without_a_tenant_reads_nothing(conn, database_url, second_tenant):
    drive_both(database_url, second_tenant.id, 300)
    conn.execute("INSERT INTO rejected_webhooks (status, reason) VALUES (400, 'x')")
    tables = tenant_tables(conn)
    owned = [t for t in tables if t["relname"] not in PLATFORM_TABLES]
    assert len(owned) >= 23 and "console_users" in {t["relname"] for t in owned}
    for t in owned:  # every table of an organisation's data: a tenant, a policy, forced
        assert t["has_tenant"] and t["relrowsecurity"] and t["relforcerowsecurity"], t["relname"]
    filled = {t["relname"] for t in owned
              if conn.execute(f'SELECT count(*) AS n FROM "{t["relname"]}"').fetchone()["n"]}
    assert {"employees", "competences", "courses", "links", "results",
            "grants", "audit_log", "rejected_webhooks", "coverage_active_edges"} <= filled

    role = conn.execute("SELECT rolsuper, rolbypassrls FROM pg_roles"
                        " WHERE rolname = 'competence_bridge_app'").fetchone()
    assert role == {"rolsuper": False, "rolbypassrls": False}
    with db.connect(database_url, autocommit=True) as app:
        db.use_app_role(app)  # as every pooled connection, and no tenant set
        assert app.execute("SELECT current_user AS u").fetchone()["u"] == "competence_bridge_app"
        for name in sorted(t["relname"] for t in owned):
            n = app.execute(f'SELECT count(*) AS n FROM "{name}"').fetchone()["n"]
            assert n == 0, f"{name}: {n} row(s) seen without a tenant"
        # Nor can it write without one.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("INSERT INTO competences (name, kind) VALUES ('K', 'main_group')")


def test_a_tenant_cannot_write_or_see_another_tenants_rows(conn, database_url, second_tenant):
    with db.tenant_connection(database_url, 1, autocommit=True) as a:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute("INSERT INTO competences (tenant_id, name, kind) VALUES (%s, 'K', 'main_group')",
                      (second_tenant.id,))
        mine = a.execute("INSERT INTO competences (name, kind) VALUES ('A', 'main_group')"
                         " RETURNING id, tenant_id").fetchone()
        assert mine["tenant_id"] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor move one there
            a.execute("UPDATE competences SET tenant_id = %s WHERE id = %s",
                      (second_tenant.id, mine["id"]))
    with db.tenant_connection(database_url, second_tenant.id, autocommit=True) as b:
        theirs = b.execute("INSERT INTO competences (name, kind) VALUES ('B', 'main_group')"
                           " RETURNING id").fetchone()["id"]
        assert b.execute("SELECT count(*) AS n FROM competences WHERE id = %s",
                         (mine["id"],)).fetchone()["n"] == 0
        assert b.execute("UPDATE competences SET name = 'taken' WHERE id = %s",
                         (mine["id"],)).rowcount == 0
        assert b.execute("DELETE FROM competences WHERE id = %s", (mine["id"],)).rowcount == 0
        # A child under another tenant's competence: refused by the foreign key with the tenant.
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            b.execute("INSERT INTO competences (parent_id, name, kind) VALUES (%s, 'G', 'group')",
                      (mine["id"],))
    rows = conn.execute("SELECT id, tenant_id, name FROM competences ORDER BY id").fetchall()
    assert rows == [{"id": mine["id"], "tenant_id": 1, "name": "A"},
                    {"id": theirs, "tenant_id": second_tenant.id, "name": "B"}]


def test_only_the_application_role_may_run_the_functions_that_look_across_tenants(conn):
    # SECURITY DEFINER bypasses the policies: such a function must not be every role's (PUBLIC
    # may run any function unless revoked; console_user_for_sign_in answers a password hash).
    definers = conn.execute(
        "SELECT p.oid::regprocedure::text AS signature,"
        " has_function_privilege('public', p.oid, 'EXECUTE') AS public_may,"
        " has_function_privilege('competence_bridge_app', p.oid, 'EXECUTE') AS app_may"
        " FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef").fetchall()
    assert {"token_by_hash(text)", "console_user_for_sign_in(text)",
            "tenants_with_due_deliveries(timestamp with time zone)"} <= {d["signature"] for d in definers}
    assert [d["signature"] for d in definers if d["public_may"] or not d["app_may"]] == []

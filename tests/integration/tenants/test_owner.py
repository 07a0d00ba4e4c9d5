"""A deployment whose database owner is not superuser (deploy/postgresql.md): migrations run as
the owner, the processes as the application role, and the token lookup, which looks across
tenants, still finds a token (docs/tenants.md, "Isolation")."""
from __future__ import annotations

import uuid

import psycopg
import pytest

from service.access import tokens
from service.platform import db, tenancy
from service.platform.migrate import migrate
from tests.conftest import ADMIN_URL

pytestmark = pytest.mark.integration


@pytest.fixture
def owned_database():
    role, name = f"cb_owner_{uuid.uuid4().hex[:8]}", f"cb_owned_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    url = ADMIN_URL.replace("postgres@", f"{role}@").rsplit("/", 1)[0] + f"/{name}"
    yield url, role
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'DROP OWNED BY "{role}"')
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_an_owner_that_is_not_superuser_migrates_and_the_app_role_is_isolated(owned_database):
    url, role = owned_database
    with db.connect(url, autocommit=True) as owner:
        assert owner.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
                             ).fetchone() == {"rolsuper": False, "rolbypassrls": False}
        migrate(owner)
        made = tokens.create(owner, "hr", [tokens.INTEGRATIONS], actor="test")  # tenant default
        owner.execute("INSERT INTO competences (name, kind) VALUES ('K', 'main_group')")
        owner.execute("INSERT INTO tenants (slug, name) VALUES ('b', 'B')")
    pool = db.make_pool(url, max_size=1, name="owned")
    try:
        pool.wait(timeout=10)
        with tenancy.scope(None), pool.connection() as app:  # no tenant bound
            assert app.execute("SELECT current_user AS u").fetchone()["u"] == db_role()
            assert app.execute("SELECT count(*) AS n FROM competences").fetchone()["n"] == 0
            found = tokens.lookup(app, made)  # across tenants, through the owner's function
            assert found["tenant_id"] == 1 and found["name"] == "hr"
            assert tokens.lookup(app, made + "x") is None
        with db.tenant_connection(url, 2) as b:
            assert b.execute("SELECT count(*) AS n FROM competences").fetchone()["n"] == 0
        with db.tenant_connection(url, 1) as a:
            assert a.execute("SELECT count(*) AS n FROM competences").fetchone()["n"] == 1
    finally:
        pool.close()


def db_role() -> str:
    return "competence_bridge_app"

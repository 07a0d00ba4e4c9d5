"""Fixtures of the admin API tests: tokens (made the way the CLI makes them) and seed data."""
from __future__ import annotations

import pytest

from service.access import tokens
from service.access.auth import INTEGRATIONS, SETTINGS
from service.people.email import normalize_email

BOTH = (INTEGRATIONS, SETTINGS)


@pytest.fixture
def make_token(conn):
    """Make a token with the given permissions; returns the token text."""
    def make(name: str = "admin", permissions=BOTH) -> str:
        return tokens.create(conn, name, list(permissions), actor="test")
    return make


@pytest.fixture
def api(client, make_token):
    """The test client, authenticated as a token named `admin` holding both permissions."""
    return Api(client, make_token("admin"))


class Api:
    """Call the API with a bearer token."""

    def __init__(self, client, token: str):
        self.client = client
        self.token = token

    def _call(self, method: str, path: str, **kwargs):
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path, **kw):
        return self._call("GET", path, **kw)

    def post(self, path, **kw):
        return self._call("POST", path, **kw)

    def patch(self, path, **kw):
        return self._call("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self._call("DELETE", path, **kw)


def add_course(conn, course_id: int = 4711, *, name: str = "HLR vuxen", guide_type: int = 14,
               status: str = "published") -> int:
    conn.execute("INSERT INTO courses (id, name, guide_type, status) VALUES (%s, %s, %s, %s)",
                 (course_id, name, guide_type, status))
    return course_id


def add_tree(conn, *, valid_days=730, window=None) -> dict:
    """A main group with one group holding one competence; returns their ids."""
    main = conn.execute("INSERT INTO competences (name, kind) VALUES ('Vård', 'main_group') RETURNING id").fetchone()["id"]
    group = conn.execute("INSERT INTO competences (parent_id, name, kind) VALUES (%s, 'Akut', 'group')"
                         " RETURNING id", (main,)).fetchone()["id"]
    leaf = conn.execute("INSERT INTO competences (parent_id, name, kind, default_valid_days, renewal_window_days)"
                        " VALUES (%s, 'HLR', 'competence', %s, %s) RETURNING id",
                        (group, valid_days, window)).fetchone()["id"]
    return {"main": main, "group": group, "leaf": leaf}


def add_link(conn, course_id: int, competence_id: int) -> int:
    return conn.execute("INSERT INTO links (course_id, competence_id, created_by) VALUES (%s, %s, 'test')"
                        " RETURNING id", (course_id, competence_id)).fetchone()["id"]


def add_employee(conn, email: str) -> int:
    return conn.execute("INSERT INTO employees (email, email_normalized) VALUES (%s, %s) RETURNING id",
                        (email, normalize_email(email))).fetchone()["id"]


def add_grant(conn, employee_id: int, competence_id: int, *, result_id: str | None = "r-1",
              course_id: int | None = 4711, link_id: int | None = None) -> int:
    return conn.execute(
        "INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source, course_id, result_id, link_id)"
        " VALUES (%s, %s, '2026-11-30', '2028-11-29', 'webhook', %s, %s, %s) RETURNING id",
        (employee_id, competence_id, course_id, result_id, link_id)).fetchone()["id"]


def audit_rows(conn, action: str) -> list[dict]:
    return conn.execute("SELECT * FROM audit_log WHERE action = %s ORDER BY id", (action,)).fetchall()

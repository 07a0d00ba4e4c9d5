"""Hostile callers and hostile text on the admin API (issue: reliability and security).

schemathesis over every operation with no token and with a token lacking the permission: never
a 5xx and never a 2xx. Injection strings, very long and non-UTF-8 values in every text field:
stored verbatim or refused with a 4xx, never executed, never a 5xx.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from service.access.auth import INTEGRATIONS, SETTINGS
from tests.integration.api.conftest import add_course, add_employee, add_grant, add_link, add_tree

pytestmark = pytest.mark.integration

HOSTILE = [
    "'; DROP TABLE grants; --",
    "x' OR '1'='1",
    "%(name)s %s {0} \\",
    "🙂 Åsa Öberg",
    "y" * 5000,
]


def _operations(app):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    # The webhook endpoint is signed, not token-protected: test_webhook_hostile.py fuzzes it.
    return [op for op in (r.ok() for r in schema.get_all_operations())
            if op.path.startswith("/api/v1/")]


@pytest.mark.parametrize("who", ["no token", "garbage token", "lacking permission"])
def test_no_operation_answers_2xx_or_5xx_to_an_unauthorised_caller(app, conn, make_token, who):
    seed = add_tree(conn)
    add_course(conn, 1)
    add_link(conn, 1, seed["leaf"])
    problems: dict[str, str] = {}
    for operation in _operations(app):
        settings_path = (operation.path.startswith("/api/v1/competences")
                         or (operation.path.startswith("/api/v1/employees")
                             and not operation.path.endswith("/results")))  # why: integrations
        needed = SETTINGS if settings_path else INTEGRATIONS
        if who == "no token":
            headers = {}
        elif who == "garbage token":
            headers = {"Authorization": "Bearer cbt_not-a-token"}
        else:
            other = SETTINGS if needed == INTEGRATIONS else INTEGRATIONS
            headers = {"Authorization": f"Bearer {make_token(f'{operation.label}-{who}'[:60], [other])}"}
        expected = 401 if who != "lacking permission" else 403

        @settings(max_examples=8, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            response = case.call(headers=headers)
            assert response.status_code < 500, f"{response.status_code} {response.text[:300]}"
            assert not 200 <= response.status_code < 300, f"{response.status_code} without permission"
            # Checked before anything else: the answer does not depend on the body or the id.
            assert response.status_code == expected, f"{response.status_code} {response.text[:300]}"

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect them all
            problems[operation.label] = str(exc)[:1500]
    assert not problems, "\n\n".join(f"{k}: {v}" for k, v in problems.items())


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_in_every_text_field_is_stored_verbatim_or_refused(api, conn, text):
    tree = add_tree(conn)
    add_course(conn, 4711)
    emp = add_employee(conn, "anna@kommun.se")
    grant = add_grant(conn, emp, tree["leaf"])
    answers = []

    def check(response, read_back=None):
        answers.append(response.status_code)
        assert response.status_code < 500, response.get_data(as_text=True)[:300]
        if 200 <= response.status_code < 300 and read_back is not None:
            assert read_back() == text

    r = api.post("/api/v1/competences", json={"name": text, "kind": "main_group"})
    check(r, lambda: conn.execute("SELECT name FROM competences WHERE id = %s", (r.json["id"],)).fetchone()["name"])
    r = api.patch(f"/api/v1/competences/{tree['leaf']}", json={"name": text})
    check(r, lambda: conn.execute("SELECT name FROM competences WHERE id = %s", (tree["leaf"],)).fetchone()["name"])
    r = api.post("/api/v1/employees", json={"email": "bo@kommun.se", "first_name": text, "last_name": text})
    check(r, lambda: conn.execute("SELECT first_name FROM employees WHERE email_normalized = 'bo@kommun.se'").fetchone()["first_name"])
    r = api.patch(f"/api/v1/employees/{emp}", json={"last_name": text})
    check(r, lambda: conn.execute("SELECT last_name FROM employees WHERE id = %s", (emp,)).fetchone()["last_name"])
    r = api.post("/api/v1/employees", json={"email": text})
    check(r)  # an email field: refused unless it is an address
    for path in ("/api/v1/courses", "/api/v1/unmatched", "/api/v1/audit", "/api/v1/employees"):
        check(api.get(path, query_string={"q": text} if path.endswith("courses") else {}))
    r = api.delete(f"/api/v1/grants/{grant}", json={"reason": text})
    check(r, lambda: conn.execute("SELECT revoked_reason FROM grants WHERE id = %s", (grant,)).fetchone()["revoked_reason"])
    # the tables are all still there and whole
    for table in ("grants", "competences", "employees", "results", "audit_log"):
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert any(200 <= a < 300 for a in answers)


@pytest.mark.parametrize("path, method", [
    ("/api/v1/competences", "POST"), ("/api/v1/employees", "POST"), ("/api/v1/links", "POST"),
])
def test_non_utf8_bodies_are_refused_never_5xx(api, path, method):
    r = api._call(method, path, data=b'{"name": "\xff\xfe"}', headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.status_code
    assert r.is_json and r.json["code"] == r.status_code

"""A console user belongs to one tenant and sees only it (docs/tenants.md; docs/console.md)."""
from __future__ import annotations

import re

import pytest

from service.access.tokens import INTEGRATIONS, SETTINGS
from service.console import users
from service.platform import db, tenancy
from tests.integration.api.conftest import add_employee

pytestmark = pytest.mark.integration


def sign_in(client, username: str, password: str):
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def test_a_console_user_sees_only_their_tenant(conn, client, database_url, second_tenant):
    with db.tenant_connection(database_url, tenancy.DEFAULT_ID, autocommit=True) as a:
        anna = add_employee(a, "anna.andersson@kommun.se")
    with db.tenant_connection(database_url, second_tenant.id, autocommit=True) as b:
        bertil = add_employee(b, "bertil.berg@kommun.se")
        users.create_user(b, "bo", "ett-långt-lösenord", [INTEGRATIONS, SETTINGS])
    # A user name is the deployment's: the sign-in form names no tenant.
    with db.tenant_connection(database_url, tenancy.DEFAULT_ID, autocommit=True) as a:
        with pytest.raises(users.UsernameTaken):
            users.create_user(a, "BO", "ett-annat-lösenord", [SETTINGS])
    assert sign_in(client, "bo", "ett-långt-lösenord").status_code == 302
    listed = client.get("/employees?q=kommun.se")
    assert listed.status_code == 200
    assert "bertil.berg@kommun.se" in listed.text and "anna.andersson" not in listed.text
    assert client.get(f"/employees/{bertil}").status_code == 200
    assert client.get(f"/employees/{anna}").status_code == 404  # not 403: nothing to confirm
    # What the user changes is audited in their tenant, as them.
    rows = conn.execute("SELECT tenant_id, actor FROM audit_log WHERE action = 'console_user.create'"
                        ).fetchall()
    assert rows == [{"tenant_id": second_tenant.id, "actor": "cli"}]

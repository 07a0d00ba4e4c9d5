"""Sessions, cookies, the user command and the catalog, without a browser (docs/console.md)."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from service.access.tokens import INTEGRATIONS, SETTINGS
from service.console import users, views
from tests.e2e.test_cli_first_contact import bare_env

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "service" / "console"
CLI = str(Path(sys.executable).with_name("competence-bridge"))


def csrf(text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)


def sign_in(client, username="ada", password="ett-långt-lösenord") -> object:
    token = csrf(client.get("/login").text)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def test_the_session_cookie_is_httponly_lax_secure_and_ends_after_8_idle_hours(conn, client):
    users.create_user(conn, "ada", "ett-långt-lösenord", [INTEGRATIONS, SETTINGS])
    answer = sign_in(client)
    assert answer.status_code == 302
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith("cb_console="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    assert client.get("/links").status_code == 200
    # The last request nine hours ago: the signed session is refused, and the user signs in again.
    with client.session_transaction() as session:
        session["seen"] = time.time() - 9 * 3600
    answer = client.get("/links")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")
    assert "8 timmar utan aktivitet" in client.get("/login").text
    assert client.get("/links").status_code == 302


def test_a_disabled_or_unknown_user_in_a_signed_cookie_is_signed_out(conn, client):
    users.create_user(conn, "ada", "ett-långt-lösenord", [SETTINGS])
    sign_in(client)
    assert client.get("/competences").status_code == 200
    conn.execute("UPDATE console_users SET disabled_at = now()")
    assert client.get("/competences").status_code == 302


def test_a_permission_taken_away_closes_the_page_at_once(conn, client):
    users.create_user(conn, "ada", "ett-långt-lösenord", [INTEGRATIONS, SETTINGS])
    sign_in(client)
    assert client.get("/audit").status_code == 200
    conn.execute("UPDATE console_users SET permissions = %s", ([SETTINGS],))
    answer = client.get("/audit")
    assert answer.status_code == 403 and "Inte tillåtet" in answer.text
    assert 'href="/audit"' not in client.get("/competences").text


def test_the_api_and_the_webhooks_need_no_csrf_token(conn, client):
    # No session, no token: the API answers 401 (its bearer token), not a CSRF refusal.
    assert client.post("/api/v1/links", json={"course_id": 1, "competence_id": 1}).status_code == 401
    assert client.post("/webhooks/infocaption", data=b"{}",
                       headers={"content-type": "application/json"}).status_code in (400, 401)


def test_after_sign_in_only_a_path_of_this_site_is_followed(conn, client):
    users.create_user(conn, "ada", "ett-långt-lösenord", [SETTINGS])
    token = csrf(client.get("/login").text)
    answer = client.post("/login?next=//evil.example/x", data={
        "username": "ada", "password": "ett-långt-lösenord", "csrf_token": token})
    assert answer.headers["Location"] == "/"


def test_create_user_reads_the_password_from_stdin_and_refuses_a_name_in_use(conn, database_url, tmp_path):
    env = bare_env(HOME=str(tmp_path), DEMO="1", DATABASE_URL=database_url)
    cmd = [CLI, "create-user", "--username", "eva", "--permission", SETTINGS]
    first = subprocess.run(cmd, input="hemligt-lösenord\n", env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "hemligt" not in first.stdout + first.stderr
    row = conn.execute("SELECT username, password_hash, permissions FROM console_users").fetchone()
    assert row["username"] == "eva" and row["permissions"] == [SETTINGS]
    assert row["password_hash"].startswith("$argon2id$")
    assert users.sign_in(conn, "eva", "hemligt-lösenord", address="test").user is not None
    again = subprocess.run(cmd, input="ett-annat-lösenord\n", env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert len(again.stderr.strip().splitlines()) == 1 and "eva" in again.stderr
    assert "Traceback" not in again.stderr
    audit = conn.execute("SELECT actor, action FROM audit_log").fetchall()
    assert audit == [{"actor": "cli", "action": "console_user.create"}]


def test_without_a_secret_key_only_the_console_is_unavailable(settings, pool):
    """Outside demo mode without SECRET_KEY the web process still takes webhooks and serves the
    API; the console, whose sessions the key signs, answers 503 (docs/console.md, "Sessions")."""
    import dataclasses

    from service.app import create_app

    app = create_app(dataclasses.replace(settings, secret_key=""), pool=pool)
    try:
        client = app.test_client()
        assert client.get("/login").status_code == 503
        assert client.post("/login", data={"username": "a", "password": "b"}).status_code == 503
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/v1/courses").status_code == 401  # the API as ever
    finally:
        app.extensions["competence_bridge"].publisher.close()


def test_every_string_of_the_console_is_in_the_swedish_catalog_and_compiled():
    found = {message for _file, _line, message, *_ in extract_from_dir(
        str(ROOT), method_map=[("service/console/**.py", "python"),
                               ("service/console/templates/**.html", "jinja2")])}
    with open(CONSOLE / "translations/sv/LC_MESSAGES/messages.po", "rb") as f:
        po = read_po(f)
    with open(CONSOLE / "translations/sv/LC_MESSAGES/messages.mo", "rb") as f:
        mo = read_mo(f)
    translated = {m.id: m.string for m in po if m.id}
    assert sorted(found - set(translated)) == []
    assert sorted(k for k, v in translated.items() if not v) == []
    assert {m.id: m.string for m in mo if m.id} == translated  # the .mo is the .po compiled


def test_the_pages_need_the_permissions_the_api_gives_the_same_data():
    from service.access.auth import PERMISSION_BY_BLUEPRINT

    assert views.PAGE_PERMISSION["links"] == PERMISSION_BY_BLUEPRINT["links"] == INTEGRATIONS
    assert views.PAGE_PERMISSION["competences"] == PERMISSION_BY_BLUEPRINT["competences"] == SETTINGS
    assert views.PAGE_PERMISSION["employees"] == SETTINGS
    assert {views.PAGE_PERMISSION[p] for p in ("reports", "unmatched", "audit", "ops")} == {INTEGRATIONS}


def test_integrations_alone_opens_a_profile_with_its_grants_but_not_the_email_form(conn, client):
    from service.people import employees

    users.create_user(conn, "ada", "ett-långt-lösenord", [INTEGRATIONS])
    person = employees.create_employees(conn, [{"email": "anna@kommun.se"}], actor="test",
                                        tz="Europe/Stockholm")[0]
    sign_in(client)
    assert client.get("/employees").status_code == 403
    page = client.get(f"/employees/{person['id']}")
    assert page.status_code == 200
    assert "Aktuella registreringar" in page.text and "Rätta e-postadressen" not in page.text
    assert 'href="/employees"' not in page.text  # no navigation entry to the search

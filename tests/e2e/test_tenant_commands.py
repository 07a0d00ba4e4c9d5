"""`competence-bridge tenant …` and `--tenant` as an operator uses them (docs/tenants.md,
"Adding a tenant"): secrets only from standard input, kept encrypted, never printed."""
from __future__ import annotations

import base64
import json
import subprocess

import pytest
from cryptography.fernet import Fernet

from service.access import tokens
from tests.e2e.test_cli_first_contact import CLI, bare_env, run

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"kommunens-egna-webhook-hemlighet").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"kommunens-nya-webhook-hemlighet!").decode()


def secrets(client_secret: str, *webhook: str) -> str:
    return json.dumps({"client_secret": client_secret, "webhook_secrets": list(webhook)})


def run_in(*args, env: dict, stdin: str):
    """The command with `stdin` on its standard input."""
    return subprocess.run([CLI, *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=180)


def test_tenant_create_list_show_set_secrets_and_tokens_of_a_tenant(conn, database_url, tmp_path):
    env = bare_env(HOME=str(tmp_path), DEMO="1", DATABASE_URL=database_url,
                   ENCRYPTION_KEY=Fernet.generate_key().decode())
    create = ["tenant", "create", "--slug", "kommun", "--name", "Kommunen",
              "--infocaption-base-url", "https://kommun.infocaption.com", "--client-id", "kommun-id"]
    made = run_in(*create, env=env, stdin=secrets("klient-hemlighet", WEBHOOK_SECRET))
    assert made.returncode == 0, made.stderr
    assert "/webhooks/infocaption/kommun" in made.stdout
    again = run_in(*create, env=env, stdin=secrets("x", WEBHOOK_SECRET))
    assert again.returncode == 2 and "exists already" in again.stderr  # one line, no traceback
    bad = run_in("tenant", "create", "--slug", "Bad Slug", "--name", "x", "--infocaption-base-url",
                 "https://x.example", "--client-id", "x", env=env, stdin=secrets("x", WEBHOOK_SECRET))
    assert bad.returncode == 2 and "slug" in bad.stderr

    stored = conn.execute("SELECT secrets FROM tenants WHERE slug = 'kommun'").fetchone()["secrets"]
    assert "klient-hemlighet" not in stored and WEBHOOK_SECRET not in stored  # encrypted

    listed = run("tenant", "list", env=env)
    assert listed.returncode == 0
    assert [line.split("\t")[1] for line in listed.stdout.strip().splitlines()] == ["default", "kommun"]
    shown = run("tenant", "show", "--slug", "kommun", env=env)
    assert json.loads(shown.stdout)["webhook_secrets"] == 1
    for out in (made, listed, shown):
        assert "klient-hemlighet" not in out.stdout + out.stderr and WEBHOOK_SECRET not in out.stdout

    rotated = run_in("tenant", "set-secrets", "--slug", "kommun", env=env,
                     stdin=secrets("klient-hemlighet", WEBHOOK_SECRET, NEW_SECRET))
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(run("tenant", "show", "--slug", "kommun", env=env).stdout)["webhook_secrets"] == 2
    assert run_in("tenant", "set-secrets", "--slug", "default", env=env,
                  stdin=secrets("x", WEBHOOK_SECRET)).returncode == 2  # the environment's

    # A token of the tenant: found by its hash, in that tenant.
    token = run("create-token", "--tenant", "kommun", "--name", "hr", "--permission",
                "administer_competence_settings", env=env)
    assert token.returncode == 0, token.stderr
    found = tokens.lookup(conn, token.stdout.strip().splitlines()[-1])
    kommun = conn.execute("SELECT id FROM tenants WHERE slug = 'kommun'").fetchone()["id"]
    assert (found["tenant_id"], found["platform"]) == (kommun, False)
    assert run("create-token", "--tenant", "nobody", "--name", "hr", "--permission",
               "administer_competence_settings", env=env).returncode == 2
    platform = run("create-token", "--platform", "--name", "ops", env=env)
    assert platform.returncode == 0, platform.stderr
    assert tokens.lookup(conn, platform.stdout.strip().splitlines()[-1])["platform"] is True

    closed = run("tenant", "deactivate", "--slug", "kommun", env=env)
    assert closed.returncode == 0
    assert "inactive" in run("tenant", "list", env=env).stdout
    assert run("tenant", "deactivate", "--slug", "default", env=env).returncode == 2

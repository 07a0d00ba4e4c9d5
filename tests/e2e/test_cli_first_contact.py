"""The `competence-bridge` command as a newcomer meets it: one-line errors, no start-up noise, and
`status` that looks without starting anything."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CLI = str(Path(sys.executable).with_name("competence-bridge"))


def run(*args, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def bare_env(**extra) -> dict:
    """Only what a process needs to start: no settings, no XDG_RUNTIME_DIR (as under systemd)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra}


def stop_embedded_postgres(data_dir: Path) -> None:
    pidfile = data_dir / "pg" / "postmaster.pid"
    if pidfile.exists():
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)


@pytest.mark.parametrize("command", [["worker"], ["web"], ["scheduler"], ["migrate"]])
def test_a_missing_setting_is_one_line_naming_the_variable(tmp_path, command):
    out = run(*command, env=bare_env(HOME=str(tmp_path)), timeout=60)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "INFOCAPTION_BASE_URL" in lines[0] and "Traceback" not in out.stderr
    assert not (tmp_path / ".data").exists()  # it stopped before touching anything


def test_a_weak_webhook_secret_stops_the_start_without_showing_it(tmp_path):
    env = bare_env(HOME=str(tmp_path), INFOCAPTION_BASE_URL="https://kommun.infocaption.com",
                   INFOCAPTION_CLIENT_ID="id", INFOCAPTION_CLIENT_SECRET="secret",
                   INFOCAPTION_WEBHOOK_SECRETS="whsec_c2hvcnQ=")
    out = run("worker", env=env, timeout=60)
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "INFOCAPTION_WEBHOOK_SECRETS" in out.stderr and "c2hvcnQ" not in out.stderr


def test_create_token_refuses_a_name_in_use_with_exit_status_2(conn, database_url, tmp_path):
    env = bare_env(HOME=str(tmp_path), DEMO="1", DATABASE_URL=database_url)
    first = run("create-token", "--name", "ops", "--permission", "administer_competence_settings", env=env)
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip().splitlines()[-1]
    assert token.startswith("cbt_")

    again = run("create-token", "--name", "ops", "--permission", "administer_competence_settings", env=env)
    assert again.returncode == 2, again.stderr
    assert "Traceback" not in again.stderr and again.stdout == ""
    [line] = again.stderr.strip().splitlines()
    assert "'ops'" in line
    assert conn.execute("SELECT count(*) AS n FROM api_tokens").fetchone()["n"] == 1


def test_status_says_that_nothing_runs_and_starts_nothing(tmp_path):
    data_dir = tmp_path / "data"
    try:
        out = run("status", env=bare_env(HOME=str(tmp_path), DEMO="1", DATA_DIR=str(data_dir)), timeout=60)
    finally:
        stop_embedded_postgres(data_dir)  # had it started one after all
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert "nothing runs" in out.stdout
    assert out.stderr == ""
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert not (data_dir / "pg").exists()


def test_commands_on_the_embedded_database_print_no_pgserver_chatter(tmp_path):
    data_dir = tmp_path / "data"
    env = bare_env(HOME=str(tmp_path), DEMO="1", DATA_DIR=str(data_dir))
    try:
        first = run("migrate", env=env)  # initdb and the first start: pgserver's loudest moment
        assert first.returncode == 0, first.stderr
        again = run("create-token", "--name", "demo", "--permission", "administer_competence_settings",
                    env=env)  # joins the running server
        assert again.returncode == 0, again.stderr
    finally:
        stop_embedded_postgres(data_dir)
    for out in (first, again):
        assert "RuntimeDirWarning" not in out.stderr
        assert '"logger": "pgserver"' not in out.stderr and "initdb" not in out.stderr
        assert "postmaster" not in out.stderr

"""With no DATABASE_URL and no BROKER_URL the demo's processes run on embedded PostgreSQL and an
on-disk queue under the data directory, and the data survives a stop and a start."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from service.platform.config import DEMO_WEBHOOK_SECRET
from tests.conftest import completed_event, dumps, sign, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_env(data_dir: Path, port: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL", "INFOCAPTION_BASE_URL", "INFOCAPTION_WEBHOOK_SECRETS", "PORT")}
    env.update(DATA_DIR=str(data_dir), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", LOG_LEVEL="WARNING",
               DEMO="1")  # as `make run` sets it: the only way into demo mode
    return env


def start(env, port) -> subprocess.Popen:
    """`make run`'s processes: honcho on Procfile.demo (web, worker and scheduler)."""
    return subprocess.Popen(
        [str(BIN / "honcho"), "start", "-f", str(ROOT / "Procfile.demo"), "-d", str(ROOT),
         "-p", str(port), "web", "worker", "scheduler"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> str:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out.decode(errors="replace")


def embedded_psql(data_dir: Path, sql: str) -> str:
    """Query the embedded server over its socket (as the demo's processes reach it)."""
    import psycopg

    with psycopg.connect(host=str(data_dir / "pg"), user="postgres", dbname="postgres") as c:
        return repr(c.execute(sql).fetchall())


def stop_embedded_postgres(data_dir: Path) -> None:
    pidfile = data_dir / "pg" / "postmaster.pid"
    if pidfile.exists():
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)


def test_demo_processes_on_embedded_defaults_keep_data_between_runs(tmp_path):
    data_dir = tmp_path / ".data"
    port = free_port()
    env = demo_env(data_dir, port)
    migrate = subprocess.run([str(BIN / "competence-bridge"), "migrate"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=180)
    assert migrate.returncode == 0, migrate.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        proc = start(env, port)
        try:
            wait_for(lambda: _get(f"{url}/healthz") == 200, timeout=90, message="/healthz 200")
            raw = dumps(completed_event("r-embedded", "nobody@kommun.se"))
            answer = requests.post(f"{url}/webhooks/infocaption", data=raw,
                                   headers=sign(raw, secret=DEMO_WEBHOOK_SECRET), timeout=10)
            assert answer.status_code == 202, answer.text
            wait_for(lambda: "unmatched" in embedded_psql(data_dir, "SELECT status FROM results WHERE id = 'r-embedded'"),
                     timeout=30, message="the result processed by the worker")
        finally:
            out = stop(proc)
        for role in ("web", "worker", "scheduler"):
            assert f"{role}.1 started" in out, out[-2000:]
        assert (data_dir / "pg" / "PG_VERSION").exists()
        # The embedded queue is a table of the embedded database: applied, the message is gone.
        assert embedded_psql(data_dir, "SELECT count(*) FROM queue_messages") == "[(0,)]"

        proc = start(env, port)
        try:
            wait_for(lambda: _get(f"{url}/healthz") == 200, timeout=90, message="/healthz 200 after restart")
            assert "unmatched" in embedded_psql(data_dir, "SELECT status FROM results WHERE id = 'r-embedded'")
            assert embedded_psql(data_dir, "SELECT count(*) FROM queue_messages") == "[(0,)]"
            again = subprocess.run([str(BIN / "competence-bridge"), "migrate"], env=env, cwd=ROOT,
                                   capture_output=True, text=True, timeout=120)
            assert "nothing to apply" in again.stdout
        finally:
            stop(proc)
    finally:
        stop_embedded_postgres(data_dir)


def _get(url: str) -> int | None:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return None

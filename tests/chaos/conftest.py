"""The long fault runs of `make chaos`: the real processes (gunicorn web, worker, scheduler)
started as in production, the InfoCaption simulator sending signed webhooks over HTTP, and
faults applied to them and to this machine's RabbitMQ and PostgreSQL.

Each scenario records its figures; at the end of the run they are written to
docs/reliability.json and into the table of docs/RELIABILITY.md.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
import requests

from tests.conftest import SECRET, SECRET_KEY, wait_for

ROOT = Path(__file__).resolve().parents[2]
FIGURES: dict[str, dict] = {}
# Short, but long enough to outlast every outage the scenarios cause (about 60 s in all).
SENDER_RETRIES = (0.5, 1, 2, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5)


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.chaos)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The service's processes, started from the CLI like the Procfile does."""

    def __init__(self, settings, log_dir: Path, *, data_dir: Path | None = None, **env):
        self.port = free_port()
        self.log_dir = log_dir
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
        if data_dir is None:
            self.env.update(DATABASE_URL=settings.database_url, BROKER_URL=settings.broker_url)
        else:  # the embedded defaults: PostgreSQL under data_dir, the queue a table in it
            self.env.update(DATA_DIR=str(data_dir))
        self.env.update(
            QUEUE_PREFIX=settings.queue_prefix, INFOCAPTION_BASE_URL="http://127.0.0.1:9",
            INFOCAPTION_CLIENT_ID="demo-client", INFOCAPTION_CLIENT_SECRET="demo-secret",
            INFOCAPTION_WEBHOOK_SECRETS=SECRET, SECRET_KEY=SECRET_KEY, PORT=str(self.port), METRICS_PORT="0",
            LOG_LEVEL="WARNING", RECONCILE_INTERVAL_S="3600",
        )
        self.env.update({k: str(v) for k, v in env.items()})
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, role: str, *args: str) -> subprocess.Popen:
        self.starts[role] = self.starts.get(role, 0) + 1
        log = open(self.log_dir / f"{role}.{self.starts[role]}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "workers.cli", role, *args], cwd=ROOT,
                                env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[role] = proc
        if role == "web":
            wait_for(lambda: _status(f"{self.url}/healthz") == 200, timeout=60, message="web up")
        return proc

    def kill(self, role: str, sig=signal.SIGKILL) -> None:
        proc = self.procs[role]
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for role, proc in self.procs.items():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _status(url: str):
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return None


def count(database_url: str, sql: str, *args) -> int:
    """Count on a fresh connection (the scenarios restart the server under old ones)."""
    for attempt in range(60):
        try:
            with psycopg.connect(database_url, connect_timeout=3) as c:
                return c.execute(sql, args).fetchone()[0]
        except psycopg.OperationalError:
            time.sleep(1)
    raise AssertionError("PostgreSQL did not come back")


@pytest.fixture
def stack(settings, tmp_path):
    made = []

    def make(**env) -> Stack:
        s = Stack(settings, tmp_path, **env)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def embedded(settings, tmp_path):
    """The embedded defaults of a single-machine install: no DATABASE_URL, no BROKER_URL.

    Yields (make_stack, database_url): the embedded PostgreSQL under a data directory of the
    test's own (started here, migrated, stopped at the end), and stacks that use it."""
    import dataclasses

    from service.platform import db
    from service.platform.migrate import migrate

    data_dir = tmp_path / ".data"
    url = db.database_url(dataclasses.replace(settings, database_url=None, data_dir=data_dir))
    with db.connect(url, autocommit=True) as conn:
        migrate(conn)
    made = []

    def make(**env) -> Stack:
        s = Stack(settings, tmp_path, data_dir=data_dir, **env)
        made.append(s)
        return s

    yield make, url
    for s in made:
        s.stop()
    pidfile = data_dir / "pg" / "postmaster.pid"
    if pidfile.exists():
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)


def record(name: str, **figures) -> None:
    FIGURES[name] = figures


def pytest_sessionfinish(session, exitstatus):
    if not FIGURES:
        return
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    store = docs / "reliability.json"
    # A run of some scenarios updates their rows and keeps the others' last figures.
    scenarios = json.loads(store.read_text())["scenarios"] if store.exists() else {}
    scenarios.update(FIGURES)
    store.write_text(json.dumps({"run_at": stamp, "scenarios": scenarios}, indent=2) + "\n")
    columns = ["events sent", "answered 202", "answered 503", "processed", "lost", "duplicated",
               "crossed", "5xx", "unauthorised 2xx", "dead-lettered", "grants", "notes"]
    lines = ["| scenario | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, f in scenarios.items():
        lines.append(f"| {name} | " + " | ".join(str(f.get(c, "–")) for c in columns) + " |")
    table = "\n".join(lines)
    doc = docs / "RELIABILITY.md"
    text = doc.read_text() if doc.exists() else "<!-- figures -->\n<!-- /figures -->\n"
    head, _, rest = text.partition("<!-- figures -->")
    _, _, tail = rest.partition("<!-- /figures -->")
    doc.write_text(f"{head}<!-- figures -->\nLast `make chaos`: {stamp}.\n\n{table}\n<!-- /figures -->{tail}")

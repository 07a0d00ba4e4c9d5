"""Fixtures on this machine's real PostgreSQL and RabbitMQ.

A run gets its own database (migrated once, emptied before each test that asks for `conn`) and
each test its own queue prefix, so runs and tests do not see each other's data. When either
server cannot be reached the run stops with an error: integration tests are never skipped.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from datetime import datetime, timezone

import psycopg
import pytest
from standardwebhooks import Webhook

from service.platform import config as config_mod
from service.platform import db, tenancy
from service.platform.migrate import migrate

ADMIN_URL = os.environ.get("TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
SECRET = "whsec_" + base64.b64encode(b"test-secret-of-competence-bridge").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the-secret-before-rotation").decode()
# Signs console sessions in tests (SECRET_KEY, docs/console.md "Sessions").
SECRET_KEY = "test-secret-key-of-the-console-at-least-32-chars"

# The chaos runs stop and start this machine's RabbitMQ and PostgreSQL: only `make chaos`
# (which sets RUN_CHAOS=1) collects them, never a plain `pytest`.
def pytest_ignore_collect(collection_path, config):
    if os.environ.get("RUN_CHAOS") != "1" and "chaos" in collection_path.parts:
        return True
    return None

DOMAIN_TABLES = (
    "grants", "results", "links", "course_status_changes", "courses",
    "competences", "employees", "webhook_receipts", "rejected_webhooks", "dead_letters",
    "api_tokens", "audit_log", "outbox", "job_cursors", "queue_messages",
    "subscriptions", "outgoing_events", "event_deliveries", "grant_notices", "grant_notices_state",
    "console_users", "console_sign_in_failures",
)


def _fail(message: str):
    pytest.exit(f"FATAL: {message} (integration tests need it; see .ci/run)", returncode=3)


@pytest.fixture(scope="session")
def database_url():
    """A fresh, migrated database for this test run, dropped at the end."""
    name = f"cb_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        _fail(f"PostgreSQL at {ADMIN_URL.split('@')[-1]} cannot be reached: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with db.connect(url, autocommit=True) as conn:
        migrate(conn)
    admin.close()
    yield url
    # A fresh connection: a test may have restarted the server (make chaos).
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="session")
def broker_url():
    host, port = "127.0.0.1", 5672
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        _fail(f"RabbitMQ at {host}:{port} cannot be reached: {exc}")
    return BROKER_URL


@pytest.fixture
def conn(database_url):
    """A connection to an emptied database (autocommit: each statement is visible at once)."""
    with db.connect(database_url, autocommit=True) as c:
        c.execute("TRUNCATE " + ", ".join(DOMAIN_TABLES) + " RESTART IDENTITY CASCADE")
        c.execute("DELETE FROM tenants WHERE id <> 1")  # the tenant `default` stays (migration 0014)
        yield c


@pytest.fixture
def settings(database_url, broker_url, request):
    """Settings for one test: the run's database, real RabbitMQ, a queue prefix of its own."""
    prefix = f"cbtest_{uuid.uuid4().hex[:10]}"
    env = {
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "INFOCAPTION_BASE_URL": "http://127.0.0.1:9",
        "INFOCAPTION_CLIENT_ID": "test",
        "INFOCAPTION_CLIENT_SECRET": "test",
        "INFOCAPTION_WEBHOOK_SECRETS": f"{SECRET} {OLD_SECRET}",
        "SECRET_KEY": SECRET_KEY,
        "QUEUE_PREFIX": prefix,
        "TIME_ZONE": "Europe/Stockholm",
        "BATCH_WAIT_MS": "5",
    }
    s = config_mod.load(env)
    yield s
    delete_queues(s)


@pytest.fixture
def embedded_settings(settings):
    """The test's settings without BROKER_URL: the embedded queue, in the run's database."""
    import dataclasses

    return dataclasses.replace(settings, broker_url=None)


def delete_queues(s: config_mod.Settings) -> None:
    from service.platform import messaging

    if messaging.is_embedded(s):
        return  # the embedded queue's rows go with the database

    with messaging.connection(s) as broker:
        channel = broker.channel()
        topo = messaging.topology(s)
        for queue in topo.queues:
            try:
                queue(channel).delete()
            except Exception:  # noqa: BLE001 - already gone
                channel = broker.channel()
        for exchange in (topo.exchange, topo.dead_letter_exchange):
            try:
                exchange(channel).delete()
            except Exception:  # noqa: BLE001
                channel = broker.channel()


@pytest.fixture
def scratch_url(database_url):
    """An empty database of its own (no migration applied), dropped afterwards: for tests of
    migrations on data of an earlier schema."""
    name = f"cb_scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def default_tenant():
    """A test's own thread acts in the tenant `default`, as a single-organisation deployment
    does; the service's threads bind their tenant themselves (docs/tenants.md, "Isolation"),
    and threads a test starts bind theirs with `in_tenant`."""
    with tenancy.scope(tenancy.DEFAULT_ID):
        yield


def in_tenant(target, tenant_id: int = tenancy.DEFAULT_ID):
    """`target` wrapped to run in a tenant: for the threads a test starts."""
    def run(*args, **kwargs):
        with tenancy.scope(tenant_id):
            return target(*args, **kwargs)
    return run


@pytest.fixture
def pool(database_url):
    p = db.make_pool(database_url, max_size=4, name="test")
    p.wait(timeout=10)
    yield p
    p.close()


def sign(body: bytes | str, *, secret: str = SECRET, msg_id: str | None = None,
         timestamp: datetime | None = None) -> dict[str, str]:
    """Sign a body as InfoCaption does (Standard Webhooks) and return the headers."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = timestamp or datetime.now(timezone.utc)
    data = body.decode() if isinstance(body, bytes) else body
    signature = Webhook(secret).sign(msg_id, timestamp, data)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def completed_event(result_id: str, email: str, course_id: int = 4711, *, passed: bool = True,
                    completed_at: str = "2026-11-29T12:00:00+01:00", course_name: str = "HLR vuxen",
                    guide_type: int = 14, timestamp: str | None = None) -> dict:
    """A course.completed body as docs/webhooks.md shows it."""
    return {
        "type": "course.completed",
        "timestamp": timestamp or datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
        "data": {
            "resultId": result_id,
            "course": {"id": course_id, "name": course_name, "guideType": guide_type},
            "user": {"email": email, "firstName": "Anna", "lastName": "Andersson"},
            "passed": passed,
            "score": 92 if passed else 31,
            "completedAt": completed_at,
        },
    }


def padded_event(size: int) -> str:
    """A course.completed body of exactly `size` bytes (an unknown field pads it)."""
    body = completed_event("r-big", "anna@kommun.se")
    body["padding"] = ""
    body["padding"] = "x" * (size - len(dumps(body)))
    raw = dumps(body)
    assert len(raw) == size
    return raw


def course_event(kind: str, course_id: int = 4711, *, timestamp: str, guide_type: int = 14) -> dict:
    return {
        "type": f"course.{kind}",
        "timestamp": timestamp,
        "data": {"course": {"id": course_id, "name": "HLR vuxen", "guideType": guide_type}},
    }


def dumps(body: dict) -> str:
    return json.dumps(body, separators=(",", ":"))


def stop_group(proc, timeout: float = 30.0) -> bool:
    """SIGTERM a process group (honcho and its processes), SIGKILL it after `timeout`; tell
    whether it stopped on SIGTERM."""
    import signal
    import subprocess

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return False


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"):
    """Poll until predicate() is truthy; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def app(settings, pool):
    """The Flask app on the test's settings, with the real publisher."""
    from service.app import create_app

    application = create_app(settings, pool=pool)
    yield application
    application.extensions["competence_bridge"].publisher.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def run_worker(settings, pool):
    """Start the result worker in a thread; stopped at the end of the test."""
    import threading

    from workers.results import ResultWorker

    started = []

    def start(**kwargs):
        worker = ResultWorker(settings, pool, **kwargs)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(timeout=30)

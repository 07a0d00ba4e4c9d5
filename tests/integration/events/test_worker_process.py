"""The Procfile's `worker` process runs the delivery loop: set up only through the environment."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import SECRET, wait_for
from tests.integration.events.conftest import ENCRYPTION_KEY
from tests.integration.events.helpers import deliveries, grant, seed, subscribe

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[3]


def _env(database_url, broker_url, bundle) -> dict:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "DATABASE_URL": database_url, "BROKER_URL": broker_url,
           "QUEUE_PREFIX": f"cbev_{uuid.uuid4().hex[:10]}", "INFOCAPTION_BASE_URL": "http://127.0.0.1:9",
           "INFOCAPTION_CLIENT_ID": "t", "INFOCAPTION_CLIENT_SECRET": "t", "INFOCAPTION_WEBHOOK_SECRETS": SECRET,
           "METRICS_PORT": "0", "ENCRYPTION_KEY": ENCRYPTION_KEY, "SUBSCRIBER_ALLOW_PRIVATE": "1",
           "REQUESTS_CA_BUNDLE": bundle, "PYTHONUNBUFFERED": "1"}
    env.pop("SSL_CERT_FILE", None)
    return env


def _start(env) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "competence-bridge"), "worker", "--queue", "deliveries"], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def test_a_worker_killed_while_sending_leaves_the_event_to_the_next_with_the_same_webhook_id(
        conn, database_url, broker_url, event_settings, receiver, test_ca):
    """At least once: kill -9 during the request; another worker sends it again, same webhook-id."""
    _, bundle = test_ca
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    receiver.script = ["hang"]
    env = _env(database_url, broker_url, bundle)
    first = _start(env)
    try:
        grant(conn, ids)
        wait_for(lambda: receiver.requests or first.poll() is not None, timeout=60, message="the first attempt")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
    assert deliveries(conn, sub["id"])[0]["state"] == "pending", "nothing was recorded by the killed worker"
    second = _start(env)
    try:
        wait_for(lambda: deliveries(conn, sub["id"])[0]["state"] == "delivered", timeout=60,
                 message="the second worker delivered it")
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.communicate(timeout=60)
    assert len(receiver.requests) == 2 and all(r["verified"] for r in receiver.requests)
    assert receiver.requests[0]["headers"]["webhook-id"] == receiver.requests[1]["headers"]["webhook-id"]
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]


def test_the_worker_process_delivers_with_the_ca_bundle_of_its_environment(conn, database_url, broker_url,
                                                                          event_settings, receiver, test_ca):
    _, bundle = test_ca
    ids = seed(conn)
    sub = subscribe(conn, event_settings, receiver, ["grant.created"])
    proc = _start(_env(database_url, broker_url, bundle))
    try:
        grant_id = grant(conn, ids)
        wait_for(lambda: receiver.requests or proc.poll() is not None, timeout=60,
                 message="the worker delivered the event")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    [request] = receiver.requests
    assert request["verified"] and request["json"]["data"]["grant"]["id"] == grant_id
    assert deliveries(conn, sub["id"])[0]["state"] == "delivered"
    assert b"anna.andersson@kommun.se" not in out

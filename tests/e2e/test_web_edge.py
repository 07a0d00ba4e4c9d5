"""The web process for real (gunicorn over a socket): a chunked body over 64 KiB is a 413 even
when its first 64 KiB are a validly signed webhook; one of exactly 64 KiB is accepted."""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from service.platform import config as config_mod
from tests.conftest import SECRET, SECRET_KEY, delete_queues, padded_event, sign, wait_for
from tests.e2e.test_procfile import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LIMIT = 64 * 1024


@pytest.fixture
def web(database_url, broker_url, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": database_url, "BROKER_URL": broker_url,
        "QUEUE_PREFIX": f"cbe2e_{uuid.uuid4().hex[:10]}", "PORT": str(port), "WEB_HOST": "127.0.0.1",
        "INFOCAPTION_BASE_URL": "http://127.0.0.1:9", "INFOCAPTION_CLIENT_ID": "test",
        "INFOCAPTION_CLIENT_SECRET": "test", "INFOCAPTION_WEBHOOK_SECRETS": SECRET, "SECRET_KEY": SECRET_KEY,
        "DATA_DIR": str(tmp_path / "data"), "WEB_CONCURRENCY": "1", "WEB_THREADS": "2",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([str(BIN / "competence-bridge"), "web"], cwd=ROOT, env=env,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"web exited early:\n{log_path.read_text()[-3000:]}")
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(up, timeout=40, interval=0.2, message="/healthz to answer 200")
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        delete_queues(config_mod.load(env))


def post_chunked(port: int, raw: str, signed: str) -> tuple[int, dict, bytes]:
    """POST with Transfer-Encoding: chunked (no Content-Length), 4 KiB a chunk, over a socket."""
    data = raw.encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/webhooks/infocaption", body=(data[i:i + 4096] for i in range(0, len(data), 4096)),
                     headers=sign(signed), encode_chunked=True)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_a_chunked_body_over_64_kib_is_413_and_one_of_64_kib_is_202(web, conn):
    exact = padded_event(LIMIT)
    status, headers, body = post_chunked(web, exact + " " * 100, signed=exact)  # signature of the prefix
    assert status == 413, body
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert conn.execute("SELECT status FROM rejected_webhooks").fetchall() == [{"status": 413}]
    status, _, body = post_chunked(web, exact, signed=exact)
    assert status == 202, body

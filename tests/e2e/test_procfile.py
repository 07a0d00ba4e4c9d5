"""The Procfile's web, worker and scheduler, started by honcho: a signed webhook becomes a grant.

Real processes on the real servers: gunicorn with several workers (prometheus multiprocess
mode), the worker consuming RabbitMQ, the scheduler holding its lock. Stopped the way a
platform stops them: SIGTERM to the process group.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from service.platform import config as config_mod
from tests.conftest import SECRET, SECRET_KEY, completed_event, delete_queues, dumps, sign, stop_group, wait_for
from tests.integration.ops.metrics_util import add_employee, parse, seed_course_link, value
from tests.unit.ops.sentry_util import ANY_EMAIL

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def procfile_env(database_url, broker_url, tmp_path):
    prefix = f"cbe2e_{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "QUEUE_PREFIX": prefix,
        "PORT": str(free_port()),
        "INFOCAPTION_BASE_URL": "http://127.0.0.1:9",
        "INFOCAPTION_CLIENT_ID": "test",
        "INFOCAPTION_CLIENT_SECRET": "test",
        "INFOCAPTION_WEBHOOK_SECRETS": SECRET,
        "SECRET_KEY": SECRET_KEY,
        "DATA_DIR": str(tmp_path / "data"),
        "METRICS_PORT": "0",  # one environment for all three: the worker's own port is tested elsewhere
        "WEB_CONCURRENCY": "2",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    yield env
    delete_queues(config_mod.load(env))


def test_procfile_processes_turn_a_webhook_into_a_grant(conn, procfile_env, tmp_path):
    link, competence = seed_course_link(conn)
    employee = add_employee(conn, "anna.andersson@kommun.se")
    base = f"http://127.0.0.1:{procfile_env['PORT']}"
    log_path = tmp_path / "honcho.log"
    with open(log_path, "wb") as log_file:
        honcho = subprocess.Popen(
            [str(BIN / "honcho"), "start", "-f", "Procfile", "web", "worker", "scheduler"],
            cwd=ROOT, env=procfile_env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        def ready():
            if honcho.poll() is not None:
                raise AssertionError(f"honcho exited early:\n{log_path.read_text()[-3000:]}")
            try:
                return requests.get(f"{base}/readyz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(ready, timeout=40, interval=0.2, message="/readyz to answer 200")
        # The worker declares the queues when it starts consuming: wait for it to be there.
        wait_for(lambda: value(scrape(base), "cb_queue_consumers",
                               queue=f"{procfile_env['QUEUE_PREFIX']}.events") == 1,
                 timeout=30, interval=0.2, message="the worker consuming")

        ids = []
        for i in range(4):  # several requests: gunicorn's two workers share them
            body = dumps(completed_event(f"r-e2e-{i}", "Anna.Andersson@kommun.se"))
            headers = sign(body)
            ids.append(headers["webhook-id"])
            response = requests.post(f"{base}/webhooks/infocaption", data=body, headers=headers, timeout=10)
            assert response.status_code == 202, response.text

        grant = wait_for(lambda: conn.execute(
            "SELECT employee_id, competence_id, source, result_id, webhook_id, link_id FROM grants").fetchall(),
            timeout=30, message="the grant")
        assert grant == [{"employee_id": employee, "competence_id": competence, "source": "webhook",
                          "result_id": "r-e2e-0", "webhook_id": ids[0], "link_id": link}]
        wait_for(lambda: conn.execute("SELECT count(*) AS n FROM results WHERE status <> 'received'")
                 .fetchone()["n"] == 4, timeout=30, message="all four results decided")

        # /metrics of gunicorn's workers, summed: exactly the four webhooks, whichever took them.
        samples = scrape(base)
        assert value(samples, "cb_webhooks_total", tenant="default", outcome="accepted", type="course.completed") == 4
        assert value(samples, "cb_results", tenant="default", status="granted") == 4
        assert value(samples, "cb_grants", tenant="default", source="webhook") == 1
    finally:
        if not stop_group(honcho):
            raise AssertionError(f"honcho did not stop on SIGTERM:\n{log_path.read_text()[-3000:]}")

    # Every process of the group is gone, and none of them wrote a raw email.
    wait_for(lambda: not _alive(honcho.pid), timeout=10, message="the process group gone")
    output = log_path.read_text()
    for role in ("web.1", "worker.1", "scheduler.1"):
        assert role in output
    assert [m.group(0) for m in ANY_EMAIL.finditer(output) if "***@" not in m.group(0)] == []
    assert "andersson" not in output.lower()


def scrape(base: str):
    response = requests.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200
    return parse(response.text)


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

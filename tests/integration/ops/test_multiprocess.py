"""/metrics under several gunicorn workers: counters of every worker are summed, dead ones kept."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.ops.metrics_util import parse, value

ROOT = Path(__file__).resolve().parents[3]


def run(code: str, env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_counters_of_every_worker_process_are_summed(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    # Two "gunicorn workers" count webhooks, then exit (gunicorn's child_exit marks them dead).
    pids = []
    for n in (2, 3):
        pids.append(int(run(
            "import os\n"
            "from service.platform.metrics import WEBHOOKS, LAG\n"
            f"WEBHOOKS.labels(outcome='accepted', type='course.completed', tenant='default').inc({n})\n"
            "LAG.labels('default').observe(0.2)\n"
            "print(os.getpid())\n", env)))
    run("import sys\n"
        "from service.platform import gunicorn_conf\n"
        "class W: pass\n"
        f"for pid in {pids}:\n"
        "    w = W(); w.pid = pid; gunicorn_conf.child_exit(None, w)\n", env)
    # A third worker answers the scrape.
    text = run("import sys\n"
               "from service.ops.health import render_metrics\n"
               "sys.stdout.write(render_metrics().decode())\n", env)
    samples = parse(text)
    assert value(samples, "cb_webhooks_total", tenant="default", outcome="accepted",
                 type="course.completed") == 5
    assert value(samples, "cb_processing_lag_seconds_count", tenant="default") == 2
    assert value(samples, "cb_processing_lag_seconds_bucket", tenant="default", le="0.25") == 2
    assert value(samples, "cb_processing_lag_seconds_bucket", tenant="default", le="0.1") == 0


def test_gunicorn_config_makes_a_fresh_directory_and_forgets_a_previous_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    made = run("import os\n"
               "from service.platform import gunicorn_conf\n"
               "print(os.environ['PROMETHEUS_MULTIPROC_DIR'])\n"
               "gunicorn_conf.on_exit(None)\n", env).strip()
    assert made and not Path(made).exists()  # made for this run, removed at exit

    stale = tmp_path / "counter_123.db"
    stale.write_bytes(b"old")
    run("from service.platform import gunicorn_conf\n"
        "gunicorn_conf.on_starting(None)\n"
        "gunicorn_conf.on_exit(None)\n", {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert not stale.exists() and tmp_path.exists()  # a given directory is emptied, not removed

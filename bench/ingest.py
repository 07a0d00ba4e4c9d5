"""Part 1: requests per second and p99 of POST /webhooks/infocaption under gunicorn, by wrk.

Three apps under the same gunicorn command line (the one `competence-bridge web` builds, see
service/cli.py): the service itself (started by `competence-bridge web`), a bare Flask 202
and the reference endpoint (bench/apps.py). wrk sends valid, distinct, freshly signed webhooks
(bench/post.lua); every answer that is not 2xx is counted as an error.
"""
from __future__ import annotations

import json
import re
import resource
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from standardwebhooks import Webhook

from bench import data, rabbit
from bench.common import BIN, HOST, SECRET, Run, cpu_snapshot, cpu_usage, free_port, say, wait_port
from service.cli import WEB_THREADS, WEB_WORKERS
from service.cli import gunicorn_args as service_gunicorn_args

LUA = Path(__file__).with_name("post.lua")


def gunicorn_args(port: int, app: str, workers: int = WEB_WORKERS, threads: int = WEB_THREADS) -> list[str]:
    """The gunicorn command line of `competence-bridge web` (service/cli.py), for another app."""
    return [str(BIN / "python"), "-m", *service_gunicorn_args(port, workers=workers, threads=threads, app=app)]


def requests_file(path: Path, port: int, count: int, tag: str) -> Path:
    """Write `count` distinct course.completed webhooks, signed now, as raw HTTP requests."""
    signer = Webhook(SECRET)
    now = datetime.now(timezone.utc)
    stamp = str(int(now.timestamp()))
    with open(path, "wb") as out:
        for webhook_id, body in data.webhook_bodies(count, tag=tag):
            text = json.dumps(body, separators=(",", ":"))
            raw = text.encode()
            head = (f"POST /webhooks/infocaption HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
                    f"webhook-id: {webhook_id}\r\nwebhook-timestamp: {stamp}\r\n"
                    f"webhook-signature: {signer.sign(webhook_id, now, text)}\r\n\r\n").encode()
            request = head + raw
            out.write(f"{len(request)}\n".encode())
            out.write(request)
    return path


def wrk(port: int, file: Path, seconds: float, connections: int) -> dict:
    """Run wrk against the webhook endpoint; return its figures (see post.lua's done())."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s",
         "-s", str(LUA), f"http://{HOST}:{port}/webhooks/infocaption", "--", str(file), "1"],
        capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^BENCH_JSON (.*)$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = json.loads(match.group(1))
    figures["wrk_cpu_s"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    figures["errors"] = sum(figures[k] for k in ("connect_errors", "read_errors", "write_errors",
                                                  "status_errors", "timeouts"))
    return figures


def measure(run: Run, label: str, app: str | None, *, db_url: str, seconds: float,
            warmup: float, connections: int, pool_size: int) -> dict:
    """Serve `app` (None: the service by `competence-bridge web`) and drive it with wrk."""
    port = free_port()
    prefix = run.prefix(label)
    rabbit.declare(prefix)
    env = run.env(db_url, prefix, PORT=str(port))
    args = ([str(BIN / "competence-bridge"), "web"] if app is None
            else gunicorn_args(port, app))
    proc = run.start(args, env, label)
    try:
        wait_port(port, 60, proc)
        warm = requests_file(run.scratch / f"{label}-warm.req", port, 2000, f"{label}warm")
        wrk(port, warm, warmup, connections)
        file = requests_file(run.scratch / f"{label}.req", port, pool_size, label)
        rabbit.take_events(prefix)  # the warm-up's: only what the measured run queues counts
        before = cpu_snapshot()
        with run.profiled(proc, f"ingest-{label}", seconds, subprocesses=True):
            figures = wrk(port, file, seconds, connections)
        figures["cpu"] = cpu_usage(before, cpu_snapshot(), {f"gunicorn ({label})": proc.pid})
        figures["cpu"]["by_component"]["wrk"] = figures["wrk_cpu_s"]
        figures["cpu"]["ms_per_request"] = {
            k: round(1000 * v / max(figures["requests"], 1), 3)
            for k, v in figures["cpu"]["by_component"].items() if k != "other processes"}
        time.sleep(0.5)
        messages, events = rabbit.take_events(prefix)
        figures["queued"] = messages  # and queued_events the events they carry
        figures["queued_events"] = events
        if proc.poll() is not None:
            raise RuntimeError(f"{label} exited with {proc.returncode}:\n{run.log_tail(label)}")
    finally:
        run.stop(proc)
        file_paths = [run.scratch / f"{label}-warm.req", run.scratch / f"{label}.req"]
        for p in file_paths:
            p.unlink(missing_ok=True)
        rabbit.delete_prefix(prefix)
        run.prefixes.remove(prefix)
    figures["distinct_bodies"] = pool_size
    figures["wrapped"] = figures["requests"] > pool_size
    say(f"  {label}: {figures['rps']:,.0f} req/s, p99 {figures['p99_us'] / 1000:.1f} ms, "
        f"{figures['errors']} errors, {figures['queued_events']:,} events queued in "
        f"{figures['queued']:,} messages")
    return figures

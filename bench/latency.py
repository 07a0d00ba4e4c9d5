"""Part 4: from webhook sent to grant visible, at a steady rate, through the whole service.

`competence-bridge web` and `competence-bridge worker` run as in production. A sender of its
own (one thread, a selector, raw HTTP/1.1 on keep-alive connections, requests signed just before) sends
webhook i at t0 + i / rate whatever happened to the earlier ones (open loop: a slow answer
delays no later request, and its wait counts). A trigger created in the bench database only
NOTIFYs the webhook id of every grant insert; the notification arrives when the grant's
transaction commits, i.e. when the grant becomes visible. Latency = notification time minus
the webhook's scheduled send time, on one monotonic clock.
"""
from __future__ import annotations

import json
import os
import selectors
import socket
import statistics
import threading
import time
from datetime import datetime, timezone

import psycopg
from standardwebhooks import Webhook

from bench import data, rabbit
from bench.common import BIN, HOST, SECRET, Run, cpu_snapshot, cpu_usage, free_port, say, wait_port


def _requests(port: int, count: int, tag: str, first_employee: int = 0, *,
              path: str = "/webhooks/infocaption", secret: str = SECRET) -> list[tuple[str, bytes, bool]]:
    signer = Webhook(secret)
    now = datetime.now(timezone.utc)
    stamp = str(int(now.timestamp()))
    out = []
    for webhook_id, body in data.webhook_bodies(count, tag=tag, first_employee=first_employee):
        text = json.dumps(body, separators=(",", ":"))
        raw = text.encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
                f"webhook-id: {webhook_id}\r\nwebhook-timestamp: {stamp}\r\n"
                f"webhook-signature: {signer.sign(webhook_id, now, text)}\r\n\r\n").encode()
        out.append((webhook_id, head + raw, body["data"]["passed"]))
    return out


class Listener(threading.Thread):
    """Record when each webhook's first grant notification arrives."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(data.q("latency_listen"))
        self.seen: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for note in self.conn.notifies(timeout=0.2):
                self.seen.setdefault(note.payload, time.monotonic())

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.conn.close()


class _Conn:
    __slots__ = ("sock", "buf", "webhook_id", "raw")

    def __init__(self, sock: socket.socket):
        self.sock, self.buf, self.webhook_id, self.raw = sock, b"", None, b""


def _send_all(port: int, reqs: list[tuple[str, bytes, bool]], rate: float,
              connections: int) -> tuple[dict[str, float], dict[str, tuple[float, int]]]:
    """Send request i at t0 + i / rate; return scheduled times and (answer time, status).

    One thread, non-blocking keep-alive sockets and a selector: the sender's own CPU per
    request is a send and a receive, so it takes little of what the measured processes need.
    A request whose time has come waits only for a free connection (there are `connections`).
    """
    sel = selectors.DefaultSelector()
    idle: list[_Conn] = []

    def connect() -> _Conn:
        sock = socket.create_connection((HOST, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return _Conn(sock)

    for _ in range(connections):
        idle.append(connect())
    scheduled: dict[str, float] = {}
    answered: dict[str, tuple[float, int]] = {}
    busy = 0
    t0 = time.monotonic() + 0.2
    i = 0

    def start(conn: _Conn, webhook_id: str, raw: bytes) -> None:
        conn.webhook_id, conn.raw, conn.buf = webhook_id, raw, b""
        sent = conn.sock.send(raw)  # a request is far smaller than an idle socket's buffer
        if sent < len(raw):
            conn.sock.setblocking(True)
            conn.sock.sendall(raw[sent:])
            conn.sock.setblocking(False)
        sel.register(conn.sock, selectors.EVENT_READ, conn)

    def finish(conn: _Conn, status: int) -> None:
        answered[conn.webhook_id] = (time.monotonic(), status)
        sel.unregister(conn.sock)
        conn.webhook_id = None
        idle.append(conn)

    while i < len(reqs) or busy:
        now = time.monotonic()
        while i < len(reqs) and idle and t0 + i / rate <= now:
            webhook_id, raw, _passed = reqs[i]
            scheduled[webhook_id] = t0 + i / rate
            start(idle.pop(), webhook_id, raw)
            busy += 1
            i += 1
        if i < len(reqs) and idle:
            timeout = max(0.0, t0 + i / rate - time.monotonic())
        else:
            timeout = 1.0
        for key, _mask in sel.select(timeout):
            conn: _Conn = key.data
            try:
                chunk = conn.sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                chunk = b""
            if not chunk:  # closed by the server while idle: reconnect and send it again
                sel.unregister(conn.sock)
                conn.sock.close()
                fresh = connect()
                start(fresh, conn.webhook_id, conn.raw)
                continue
            conn.buf += chunk
            head_end = conn.buf.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            head = conn.buf[:head_end]
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(conn.buf) - head_end - 4 >= length:
                finish(conn, int(head[9:12]))
                busy -= 1
    for conn in idle:
        conn.sock.close()
    sel.close()
    return scheduled, answered


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure(run: Run, template: str, *, rate: float, seconds: float, connections: int = 64) -> dict:
    name, url = run.database("latency", template)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(data.q("latency_trigger_function"))
        conn.execute(data.q("latency_trigger"))
    prefix = run.prefix("latency")
    rabbit.declare(prefix)
    port = free_port()
    env = run.env(url, prefix, PORT=str(port))
    web = run.start([str(BIN / "competence-bridge"), "web"], env, "latency-web")
    worker = run.start([str(BIN / "competence-bridge"), "worker", "--queue", "events"], env, "latency-worker")
    listener = Listener(url)
    listener.start()
    try:
        wait_port(port, 60, web)
        count = int(rate * seconds)
        # Warm up both processes (connections, imports, prepared statements) at a low rate.
        warm = _requests(port, 300, "latwarm", first_employee=count)
        _send_all(port, warm, 100, 8)
        deadline = time.monotonic() + 30
        while sum(1 for w, _, passed in warm if passed and w in listener.seen) < sum(1 for *_, p in warm if p):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"the warm-up webhooks were not granted:\n{run.log_tail('latency-worker')}")
            time.sleep(0.1)
        reqs = _requests(port, count, "lat")
        say(f"  latency: sending {count:,} webhooks at {rate:,.0f}/s")
        before = cpu_snapshot()
        with run.profiled(web, "latency-web", seconds, subprocesses=True), \
                run.profiled(worker, "latency-worker", seconds):
            started = time.monotonic()
            scheduled, answered = _send_all(port, reqs, rate, connections)
            send_s = time.monotonic() - started
        cpu = cpu_usage(before, cpu_snapshot(), {"web": web.pid, "worker": worker.pid,
                                                 "sender and listener (bench)": os.getsid(0)})
        expected = [w for w, _, passed in reqs if passed]
        deadline = time.monotonic() + 30
        while sum(1 for w in expected if w in listener.seen) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        listener.stop()
        run.stop(web)
        run.stop(worker)
    latencies = [1000 * (listener.seen[w] - scheduled[w]) for w in expected if w in listener.seen]
    answers = [1000 * (answered[w][0] - scheduled[w]) for w, *_ in reqs if w in answered]
    statuses: dict[int, int] = {}
    for _t, status in answered.values():
        statuses[status] = statuses.get(status, 0) + 1
    figures = {
        "rate": rate, "seconds": seconds, "sent": len(reqs), "send_s": round(send_s, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "grant_webhooks": len(expected), "granted_seen": len(latencies),
        "p50_ms": round(_pct(latencies, 50), 1), "p90_ms": round(_pct(latencies, 90), 1),
        "p99_ms": round(_pct(latencies, 99), 1), "max_ms": round(max(latencies, default=float("nan")), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "answer_p50_ms": round(_pct(answers, 50), 1), "answer_p99_ms": round(_pct(answers, 99), 1),
        "cpu": cpu,
    }
    say(f"  latency: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms (answer p99 "
        f"{figures['answer_p99_ms']} ms), {len(latencies):,}/{len(expected):,} grants seen, {statuses}")
    rabbit.delete_prefix(prefix)
    run.prefixes.remove(prefix)
    from bench.common import drop_database

    drop_database(name)
    run.databases.remove(name)
    return figures

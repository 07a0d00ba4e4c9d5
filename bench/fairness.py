"""Part 7: fairness between tenants: one tenant's webhooks while another tenant's backfill runs.

One deployment as in production (`competence-bridge web`, `worker --queue events`, `worker
--queue backfill`) serves two tenants (docs/tenants.md) on one database and one broker:

- tenant A (`default`, configured from the environment) has a link whose course holds N
  historical results in its own simulator process (part 3's, bench/backfill.py);
- tenant B (`bench-b`, made with `service.tenants.tenants.create`, its secrets encrypted with
  ENCRYPTION_KEY) has its own simulator (URL), webhook secret, competence tree, courses, links
  and employees (the same addresses as A's: other people, in another tenant).

B's webhooks go to `/webhooks/infocaption/bench-b`, signed with B's secret, from part 4's
open-loop sender (bench/latency.py) at a fixed rate; part 4's NOTIFY trigger on grant inserts
tells when each one's grant is visible. Two windows of the same length, in one run, on one
database: first with no backfill running (the baseline), then while A's backfill runs in the
backfill worker (its message published to the backfill queue exactly as the scheduler's outbox
relay publishes a new link's). A's progress is read from its link's counter, alone for a few
seconds before B's window and during it.

Where B's latency goes, per webhook: sent -> answered 202 (web, broker confirm), answered ->
the start of the result worker's transaction that took it (the broker queue and the worker's
batch wait), that start -> grant visible (the database). Meanwhile the bench samples what this
run's database backends wait on, by process (each runs with its own PGAPPNAME).
"""
from __future__ import annotations

import base64
import os
import threading
import time

import psycopg
from psycopg.rows import dict_row

from bench import data, latency, rabbit
from bench.backfill import COURSE_ID, COURSE_NAME
from bench.common import BIN, Run, busy_pct, cpu_snapshot, cpu_usage, drop_database, free_port, say, wait_port

SLUG_B = "bench-b"
SECRET_B = "whsec_" + base64.b64encode(b"secret-of-the-second-tenant-of-the-bench").decode()
# A Fernet key (url-safe base64 of 32 bytes) of the bench's own: B's secrets are kept with it.
ENCRYPTION_KEY = base64.urlsafe_b64encode(b"fernet-key-of-the-bench-run-32b!").decode()
PAGE_SIZE = 500


def _pct(values: list[float], p: float) -> float | None:
    v = latency._pct(values, p)
    return None if v != v else round(v, 1)  # NaN: no values


def _seed_tenant_b(url: str, settings, base_url: str) -> int:
    """Tenant B and its organisation, in the shape of the template's (bench/data.py)."""
    from service.tenants import tenants

    params = {"linked": data.COURSES * data.PER_COURSE, "courses": data.COURSES,
              "first_course": data.FIRST_COURSE, "per_course": data.PER_COURSE,
              "employees": data.EMPLOYEES}
    with psycopg.connect(url, row_factory=dict_row) as conn:
        tenant_id = tenants.create(conn, settings, slug=SLUG_B, name="Bench tenant B",
                                   infocaption_base_url=base_url, client_id="bench",
                                   secrets={"client_secret": "bench", "webhook_secrets": [SECRET_B]})
        conn.execute(data.q("fairness_bind_tenant"), {"tenant": str(tenant_id)})
        conn.execute(data.q("fairness_tenant_competences"), params)
        conn.execute(data.q("seed_courses"), params)
        conn.execute(data.q("fairness_tenant_links"), params)
        conn.execute(data.q("seed_employees"), params)
        rows = conn.execute(data.q("fairness_tenant_rows"), {"tenant": tenant_id}).fetchone()
    expected = {"employees": data.EMPLOYEES, "courses": data.COURSES, "links": params["linked"]}
    if dict(rows) != expected:
        raise RuntimeError(f"tenant B was not seeded as meant: {dict(rows)} != {expected}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return tenant_id


class Sampler(threading.Thread):
    """Every `every` seconds: A's link progress, B's events queue depth, the backends' waits."""

    def __init__(self, url: str, db_name: str, prefix: str, link_id: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        self.db_name, self.prefix, self.link_id, self.every = db_name, prefix, link_id, every
        self.progress: list[tuple[float, int, str, str]] = []  # (monotonic, processed, state, phase)
        self.depths: list[int] = []
        self.waits: dict[str, dict[str, int]] = {}
        self.samples = 0
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def read_progress(self) -> tuple[float, int, str, str]:
        with self.lock:
            row = self.conn.execute(data.q("fairness_link_progress"), {"link_id": self.link_id}).fetchone()
        return time.monotonic(), int(row["backfill_processed"] or 0), row["backfill_state"], row["phase"] or "-"

    def reset(self) -> None:
        with self.lock:
            self.progress, self.depths, self.waits, self.samples = [], [], {}, 0

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            point = self.read_progress()
            with self.lock:
                rows = self.conn.execute(data.q("fairness_waits"), {"db": self.db_name}).fetchall()
                self.progress.append(point)
                self.samples += 1
                for row in rows:
                    by = self.waits.setdefault(row["process"], {})
                    by[row["what"]] = by.get(row["what"], 0) + row["n"]
            try:
                depth = rabbit.depth(self.prefix)
            except Exception:  # noqa: BLE001 - a missed sample is no result
                continue
            with self.lock:
                self.depths.append(depth)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.conn.close()


def _window(run: Run, label: str, *, port: int, url: str, tenant_b: int, listener: latency.Listener,
            sampler: Sampler, rate: float, seconds: float, first_employee: int, sessions: dict) -> dict:
    """B's webhooks at `rate` for `seconds`; latency to grant and where it went."""
    count = int(rate * seconds)
    tag = f"fair{label}"
    reqs = latency._requests(port, count, tag, first_employee, path=f"/webhooks/infocaption/{SLUG_B}",
                             secret=SECRET_B)
    offset = time.time() - time.monotonic()  # wall clock (the database's) -> monotonic
    sampler.reset()
    before = cpu_snapshot()
    progress_before = sampler.read_progress()
    started = time.monotonic()
    scheduled, answered = latency._send_all(port, reqs, rate, 64)
    send_s = time.monotonic() - started
    progress_after = sampler.read_progress()
    cpu = cpu_usage(before, cpu_snapshot(), sessions)
    with sampler.lock:
        depths, waits, samples = list(sampler.depths), dict(sampler.waits), sampler.samples
        points = [progress_before, *sampler.progress, progress_after]
    # A's rate while its backfill ran (until it finished its units, or stopped, if it did).
    running = [pt for pt in points if pt[2] == "running" and pt[3] == "units"] or [progress_before]
    last_running = running[-1]
    expected = [w for w, _, passed in reqs if passed]
    deadline = time.monotonic() + 30
    while sum(1 for w in expected if w in listener.seen) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.2)
    with psycopg.connect(url) as conn:
        began = {w: at - offset for w, at in
                 conn.execute(data.q("fairness_receipts"), {"tenant": tenant_b, "like": f"msg_bench_{tag}_%"})}
    seen = [w for w in expected if w in listener.seen]
    lat = [1000 * (listener.seen[w] - scheduled[w]) for w in seen]
    answer = [1000 * (answered[w][0] - scheduled[w]) for w in seen if w in answered]
    queue = [1000 * (began[w] - answered[w][0]) for w in seen if w in answered and w in began]
    db = [1000 * (listener.seen[w] - began[w]) for w in seen if w in began]
    # When the slow ones were sent (second of the window): one stall, or spread out?
    t0 = min(scheduled.values())
    slow: dict[int, int] = {}
    for w in seen:
        if w in answered and 1000 * (answered[w][0] - scheduled[w]) > 250:
            sec = int(scheduled[w] - t0)
            slow[sec] = slow.get(sec, 0) + 1
    statuses: dict[str, int] = {}
    for _t, status in answered.values():
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    done = last_running[1] - progress_before[1]
    span = last_running[0] - progress_before[0]
    fig = {
        "rate": rate, "seconds": seconds, "sent": len(reqs), "send_s": round(send_s, 2), "statuses": statuses,
        "grant_webhooks": len(expected), "granted_seen": len(lat),
        "p50_ms": _pct(lat, 50), "p90_ms": _pct(lat, 90), "p99_ms": _pct(lat, 99),
        "max_ms": round(max(lat), 1) if lat else None,
        "parts_ms": {name: {"p50": _pct(v, 50), "p99": _pct(v, 99), "max": round(max(v), 1) if v else None}
                     for name, v in (("answer", answer), ("queue", queue), ("database", db))},
        "answers_over_250ms_by_second": dict(sorted(slow.items())),
        "queue_depth_max": max(depths, default=None), "queue_depth_samples": len(depths),
        "backend_waits": {"samples": samples, "by_process": waits},
        "backfill": {"processed_before": progress_before[1], "processed_after": progress_after[1],
                     "state_after": progress_after[2], "phase_after": progress_after[3],
                     "running_s": round(span, 1),
                     "results_per_s": round(done / span, 1) if span > 0 else None},
        "cpu": cpu, "machine_busy_pct": busy_pct(cpu),
    }
    say(f"  fairness ({label}): B p50 {fig['p50_ms']} ms, p99 {fig['p99_ms']} ms "
        f"({len(lat):,}/{len(expected):,} grants seen, {statuses}); parts p99 "
        f"{ {k: v['p99'] for k, v in fig['parts_ms'].items()} }; queue depth max {fig['queue_depth_max']}; "
        f"A's backfill {fig['backfill']['results_per_s']} results/s ({progress_after[2]}, {progress_after[3]})")
    return fig


def measure(run: Run, template: str, *, results: int, rate: float, seconds: float,
            alone_s: float = 10.0) -> dict:
    from service.platform import config as config_mod
    from service.platform import messaging

    name, url = run.database("fairness", template)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(data.q("latency_trigger_function"))
        conn.execute(data.q("latency_trigger"))
        conn.execute(data.q("backfill_setup_course"), {"course_id": COURSE_ID, "name": COURSE_NAME})
        link_id = conn.execute(data.q("backfill_setup_link"), {"course_id": COURSE_ID}).fetchone()[0]
    prefix = run.prefix("fairness")
    rabbit.declare(prefix)
    port_a, port_b, port = free_port(), free_port(), free_port()
    sim_env = run.env("postgresql:///unused", "unused")
    sim_a = run.start([str(BIN / "python"), "-m", "bench.backfill", "serve", "--results", str(results),
                       "--port", str(port_a)], sim_env, "fairness-sim-a")
    sim_b = run.start([str(BIN / "python"), "-m", "bench.backfill", "serve", "--results", "1",
                       "--port", str(port_b)], sim_env, "fairness-sim-b")
    env = run.env(url, prefix, PORT=str(port), INFOCAPTION_BASE_URL=f"http://127.0.0.1:{port_a}",
                  ENCRYPTION_KEY=ENCRYPTION_KEY)
    settings = config_mod.load(env)
    out: dict = {"results": results, "tenant_b": SLUG_B, "link_id": link_id}
    started = time.monotonic()
    tenant_b = _seed_tenant_b(url, settings, f"http://127.0.0.1:{port_b}")
    out["tenant_b_id"] = tenant_b
    wait_port(port_b, 120, sim_b)
    wait_port(port_a, 600, sim_a)
    out["setup_s"] = round(time.monotonic() - started, 1)
    say(f"  fairness: tenant B ({SLUG_B}, id {tenant_b}) seeded; simulator of A up with {results:,} "
        f"results; {out['setup_s']}s")
    procs = {
        "web": run.start([str(BIN / "competence-bridge"), "web"], dict(env, PGAPPNAME="bench-web"), "fairness-web"),
        "events worker": run.start([str(BIN / "competence-bridge"), "worker", "--queue", "events"],
                                   dict(env, PGAPPNAME="bench-events-worker"), "fairness-events"),
        "backfill worker": run.start([str(BIN / "competence-bridge"), "worker", "--queue", "backfill"],
                                     dict(env, PGAPPNAME="bench-backfill-worker"), "fairness-backfill"),
    }
    sessions = {label: p.pid for label, p in procs.items()}
    sessions.update({"simulator A": sim_a.pid, "simulator B": sim_b.pid,
                     "sender, listener, sampler (bench)": os.getsid(0)})
    listener = latency.Listener(url)
    listener.start()
    sampler = Sampler(url, name, prefix, link_id)
    sampler.start()
    try:
        wait_port(port, 60, procs["web"])
        # Warm up web and worker (connections, imports, B's directory entry) at a low rate.
        warm = latency._requests(port, 300, "fairwarm", 90_000, path=f"/webhooks/infocaption/{SLUG_B}",
                                 secret=SECRET_B)
        _sched, warm_answers = latency._send_all(port, warm, 100, 8)
        statuses = {s for _t, s in warm_answers.values()}
        if statuses != {202}:
            raise RuntimeError(f"B's warm-up webhooks were answered {statuses}:\n{run.log_tail('fairness-web')}")
        deadline = time.monotonic() + 30
        while sum(1 for w, _, p in warm if p and w in listener.seen) < sum(1 for *_, p in warm if p):
            if time.monotonic() > deadline or procs["events worker"].poll() is not None:
                raise RuntimeError(f"B's warm-up webhooks were not granted:\n{run.log_tail('fairness-events')}")
            time.sleep(0.1)
        say(f"  fairness: baseline, B's webhooks at {rate:,.0f}/s for {seconds}s, no backfill running")
        out["baseline"] = _window(run, "base", port=port, url=url, tenant_b=tenant_b, listener=listener,
                                  sampler=sampler, rate=rate, seconds=seconds, first_employee=0,
                                  sessions=sessions)
        # A's backfill: the message the outbox relay publishes for a new link (workers/scheduler.py).
        publisher = messaging.Publisher(settings)
        publisher.publish({"link_id": link_id, "tenant": 1}, kind=messaging.BACKFILL)
        publisher.close()
        deadline = time.monotonic() + 120
        while (point := sampler.read_progress())[1] == 0:
            if time.monotonic() > deadline or procs["backfill worker"].poll() is not None:
                raise RuntimeError(f"A's backfill did not start:\n{run.log_tail('fairness-backfill')}")
            time.sleep(0.2)
        time.sleep(alone_s)
        later = sampler.read_progress()
        out["backfill_alone"] = {"seconds": round(later[0] - point[0], 1),
                                 "results_per_s": round((later[1] - point[1]) / (later[0] - point[0]), 1),
                                 "processed": later[1], "phase": later[3]}
        say(f"  fairness: A's backfill alone {out['backfill_alone']['results_per_s']:,} results/s; "
            f"now B's webhooks at {rate:,.0f}/s for {seconds}s beside it")
        out["during_backfill"] = _window(run, "load", port=port, url=url, tenant_b=tenant_b,
                                         listener=listener, sampler=sampler, rate=rate, seconds=seconds,
                                         first_employee=20_000, sessions=sessions)
        d = out["during_backfill"]
        if d["backfill"]["state_after"] != "running":
            out["note"] = (f"A's backfill was {d['backfill']['state_after']} ({d['backfill']['phase_after']}) "
                           "at the end of B's window: it did not run the whole window")
            with psycopg.connect(url, row_factory=dict_row) as conn:
                out["backfill_error"] = dict(conn.execute(data.q("fairness_link_error"),
                                                          {"link_id": link_id}).fetchone())
            out["backfill_worker_log"] = run.log_tail("fairness-backfill", 40)
            say(f"  fairness: {out['note']}: {out['backfill_error']}\n{out['backfill_worker_log']}")
        for label, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"the {label} exited with {proc.returncode}")
    finally:
        sampler.stop()
        listener.stop()
        for proc in (*procs.values(), sim_a, sim_b):
            run.stop(proc)
    b, d = out["baseline"], out["during_backfill"]
    out["p99_ratio"] = round(d["p99_ms"] / b["p99_ms"], 2) if d["p99_ms"] and b["p99_ms"] else None
    rabbit.delete_prefix(prefix)
    run.prefixes.remove(prefix)
    drop_database(name)
    run.databases.remove(name)
    return out

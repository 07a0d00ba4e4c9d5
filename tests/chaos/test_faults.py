"""Faults with a steady stream of signed webhooks from the simulator, then a final count of
results and grants against what the simulator sent (docs/rules.md, rule 9)."""
from __future__ import annotations

import base64
import os
import random
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.rows import tuple_row

from service.platform import db
from service.catalog import competences
from service.catalog import links as catalog_links
from service.people import employees as people_employees
from service.grants import pipeline
from service.people.email import normalize_email
from service.demo.simulator import Simulator, generate
from tests.chaos.conftest import SENDER_RETRIES, count, record
from tests.conftest import DOMAIN_TABLES, SECRET, wait_for
from tests.model import next_period

TZ = "Europe/Stockholm"


# --- helpers ------------------------------------------------------------------------------


def reset(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("TRUNCATE " + ", ".join(DOMAIN_TABLES) + " RESTART IDENTITY CASCADE")


def _connect(database_url: str, tenant_id: int | None = None, **kwargs):
    """The owner's connection (every tenant's rows), or the application role's bound to a
    tenant (only its rows: docs/tenants.md)."""
    if tenant_id is None:
        return psycopg.connect(database_url, **kwargs)
    return db.tenant_connection(database_url, tenant_id, row_factory=tuple_row, **kwargs)


def seed(database_url: str, sim: Simulator, *, per_course: int = 2, clear_outbox: bool = True,
         tenant_id: int | None = None) -> dict:
    """Employees of the simulated organisation, a tree, and links for every published course
    (in the tenant `default`, or in `tenant_id`)."""
    links = {}
    connected = (db.connect(database_url) if tenant_id is None
                 else db.tenant_connection(database_url, tenant_id))
    with connected as conn, conn.transaction():
        people_employees.create_employees(conn, [{"email": e.email} for e in sim.data.employees], actor="chaos", tz=TZ)
        main = competences.create_competence(conn, {"name": "Vård", "kind": "main_group"}, actor="chaos")
        group = competences.create_competence(conn, {"name": "Akut", "kind": "group", "parent_id": main["id"]}, actor="chaos")
        for course in sim.data.published_courses():
            conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (%s, %s, %s)",
                         (course.id, course.name, course.guide_type))
            for k in range(per_course):
                comp = competences.create_competence(conn, {
                    "name": f"{course.name} {k}", "kind": "competence", "parent_id": group["id"],
                    "default_valid_days": 365 if k == 0 else None}, actor="chaos")
                links[catalog_links.create_link(conn, course.id, comp["id"], actor="chaos")["id"]] = (course.id, comp["id"])
        if clear_outbox:
            conn.execute("DELETE FROM outbox")  # no history to backfill in these scenarios
    return links


def check_grants(sim: Simulator, links: dict, database_url: str, tenant_id: int | None = None) -> dict:
    """The grants against the simulator's passes (docs/rules.md, rule 3), for any arrival order.

    Returns counts: `pairs` (employee and competence) granted, `extra` grants (a pair nobody
    earned, a result that is the evidence of two grants of one competence, a period that
    starts neither on its result's completion date nor the day after another one ends,
    overlapping periods) and `missing` ones
    (a pair earned but not granted, or a pass whose day no period covers and whose own period
    would overlap none: it should have granted). Grants follow arrival, so which pass starts a
    period may differ between runs; these hold for every order.
    """
    with _connect(database_url, tenant_id) as c:
        rules = {k: (days, window) for k, days, window in c.execute(
            "SELECT id, default_valid_days, renewal_window_days FROM competences").fetchall()}
        grants = c.execute("SELECT e.email_normalized, g.competence_id, g.valid_from, g.valid_to, g.result_id"
                           " FROM grants g JOIN employees e ON e.id = g.employee_id").fetchall()
        overlapping = c.execute(
            "SELECT count(*) FROM grants a JOIN grants b ON a.employee_id = b.employee_id"
            " AND a.competence_id = b.competence_id AND a.id < b.id"
            " AND daterange(a.valid_from, a.valid_to, '[]') && daterange(b.valid_from, b.valid_to, '[]')"
            " WHERE a.revoked_at IS NULL AND b.revoked_at IS NULL").fetchone()[0]
    staff = {normalize_email(e.email) for e in sim.data.employees}
    by_course: dict[int, list[int]] = {}
    for course_id, comp in links.values():
        by_course.setdefault(course_id, []).append(comp)
    days_of: dict[str, object] = {}
    passes: dict[tuple[str, int], list] = {}
    for r in sim.data.all_results():
        email = normalize_email(r["user"]["email"])
        if r["passed"] and email in staff:
            day = datetime.fromisoformat(r["completedAt"]).astimezone(ZoneInfo(TZ)).date()
            days_of[r["resultId"]] = day
            for comp in by_course.get(r["courseId"], []):
                passes.setdefault((email, comp), []).append(day)
    periods: dict[tuple[str, int], list] = {}
    for email, comp, first, last, rid in grants:
        periods.setdefault((email, comp), []).append((first, last, rid))
    evidence = [(comp, rid) for _, comp, _, _, rid in grants]
    extra = (len(set(periods) - set(passes)) + (len(evidence) - len(set(evidence))) + overlapping
             + sum(1 for email, comp, first, _, rid in grants
                   if days_of.get(rid) != first  # nor the day after the period it renews
                   and not any(last is not None and last + timedelta(days=1) == first
                               for _, last, _ in periods[(email, comp)])))
    missing = len(set(passes) - set(periods))
    for pair, days in passes.items():
        held = periods.get(pair, [])
        missing += sum(1 for day in days if next_period(day, *rules[pair[1]], held) is not None)
    return {"pairs": len(periods), "grants": len(grants), "extra": extra, "missing": missing}


def generated(sim: Simulator) -> int:
    with sim.lock:
        return sum(len(v) for v in sim.data.results.values())


def run_traffic(sim: Simulator, total: int, rate: float, during=None) -> None:
    """Let the simulator add `total` results at `rate`/s, calling during(elapsed) meanwhile."""
    sim.start_traffic(rate, pass_share=0.85, unmatched_share=0.1, seed=total)
    started = time.monotonic()
    try:
        while generated(sim) < total:
            if during is not None:
                during(time.monotonic() - started)
            time.sleep(0.05)
    finally:
        sim.stop_traffic()


def settle_and_count(name: str, sim: Simulator, stack, database_url: str, links: dict, *,
                     tenant_id: int | None = None, **notes) -> dict:
    """Wait until the sender is done and the worker caught up; count and record (of one tenant
    when `tenant_id`: its rows only, and `crossed` counts its results that are not its own)."""
    assert sim.drain_webhooks(timeout=600), "the simulator could not deliver every webhook"
    sent = generated(sim)

    def processed_now() -> int:
        with _connect(database_url, tenant_id, connect_timeout=3) as c:
            return c.execute("SELECT count(*) FROM webhook_receipts").fetchone()[0]

    wait_for(lambda: processed_now() >= sent, timeout=600, interval=0.5,
             message=f"{sent} webhooks processed")
    time.sleep(1.0)  # anything processed twice would show now
    sender = sim.sender
    result_ids = {r["resultId"] for r in sim.data.all_results()}
    own = {(r["resultId"], normalize_email(r["user"]["email"])) for r in sim.data.all_results()}
    with _connect(database_url, tenant_id) as c:
        stored = {row[0] for row in c.execute("SELECT id FROM results").fetchall()}
        pairs = {(row[0], row[1]) for row in c.execute("SELECT id, email_normalized FROM results")}
        rows = c.execute("SELECT count(*) FROM results").fetchone()[0]
        dead = c.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        processed = c.execute("SELECT count(*) FROM webhook_receipts").fetchone()[0]
    checked = check_grants(sim, links, database_url, tenant_id)
    answers = dict(sender.answers)
    figures = {
        "events sent": sent,
        "answered 202": answers.get(202, 0),
        "answered 503": answers.get(503, 0),
        "processed": processed,
        "lost": len(result_ids - stored),
        "duplicated": (rows - len(stored)) + checked["extra"],
        "crossed": len(pairs - own),
        "5xx": sum(n for status, n in answers.items() if status >= 500 and status != 503),
        "dead-lettered": dead,
        "grants": checked["grants"],
        "missing grants": checked["missing"],
        "given up": sender.given_up,
        "notes": "; ".join(f"{k} {v}" for k, v in notes.items()),
    }
    record(name, **figures)
    assert sender.given_up == 0, figures
    assert figures["answered 202"] == sent, figures  # every webhook ended with a 202, once
    assert processed == sent and figures["lost"] == 0 and figures["duplicated"] == 0, figures
    assert figures["crossed"] == 0, figures
    assert figures["5xx"] == 0 and dead == 0 and checked["missing"] == 0 and checked["pairs"], figures
    return figures


def make_sim(stack_url: str, *, seed: int, employees: int = 1500, courses: int = 4,
             results_per_course: int = 0, concurrency: int = 8, tenant: str | None = None,
             secret: str = SECRET) -> Simulator:
    """A simulated InfoCaption sending to the tenant `default`'s URL, or to `tenant`'s."""
    data = generate(seed, courses=courses, results_per_course=results_per_course, employees=employees)
    for course in list(data.courses.values())[:courses]:
        course.published = True  # every course in play is published
    path = "/webhooks/infocaption" + (f"/{tenant}" if tenant else "")
    return Simulator(data, webhook_url=stack_url + path, webhook_secret=secret,
                     retry_schedule=SENDER_RETRIES, sender_concurrency=concurrency).start()


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=180)


# --- the scenarios ------------------------------------------------------------------------


def kill_worker_ten_times(name: str, s, database_url: str, seed_no: int, **notes) -> dict:
    """20,000 events at 400/s while the worker is SIGKILLed and started again ten times."""
    sim = make_sim(s.url, seed=seed_no)
    s.env["INFOCAPTION_BASE_URL"] = sim.url
    links = seed(database_url, sim)
    s.start("web")
    s.start("worker", "--queue", "events")
    rng = random.Random(seed_no)
    kills = []
    next_kill = [rng.uniform(1.0, 3.0)]

    def during(elapsed):
        if len(kills) < 10 and elapsed >= next_kill[0]:
            s.kill("worker")
            kills.append(round(elapsed, 1))
            s.start("worker", "--queue", "events")
            next_kill[0] = elapsed + rng.uniform(1.5, 4.0)

    try:
        run_traffic(sim, 20_000, rate=400, during=during)
        while len(kills) < 10:  # the stream ended early: the rest while the worker catches up
            during(next_kill[0])
            time.sleep(0.5)
        figures = settle_and_count(name, sim, s, database_url, links, kills=len(kills), **notes)
    finally:
        sim.stop()
    assert len(kills) == 10
    return figures


SECOND = "kommun-b"
PER_TENANT = 5_000  # events each tenant sends in the two-tenant scenarios
SECOND_SECRET = "whsec_" + base64.b64encode(b"the second tenant's chaos secret").decode()


def two_tenants_worker_killed(name: str, s, database_url: str, seed_no: int) -> list[dict]:
    """Two tenants whose simulators use the same course ids and the same emails, PER_TENANT
    events each at 200/s at once, while the worker is SIGKILLed ten times: per tenant 0 lost,
    0 duplicated, 0 crossed (each tenant's results are its own sender's only)."""
    from types import SimpleNamespace

    from cryptography.fernet import Fernet

    from service.tenants import tenants

    key = Fernet.generate_key().decode()
    s.env["ENCRYPTION_KEY"] = key
    with db.connect(database_url, autocommit=True) as owner:
        owner.execute("DELETE FROM tenants WHERE id <> 1")
        second = tenants.create(owner, SimpleNamespace(encryption_keys=(key,)), slug=SECOND,
                                name="Kommun B", infocaption_base_url="http://127.0.0.1:9",
                                client_id="b", secrets={"client_secret": "b",
                                                        "webhook_secrets": [SECOND_SECRET]})
    # The same seed for the data: the same course ids and the same emails in both tenants.
    sims = {1: make_sim(s.url, seed=seed_no), second: make_sim(s.url, seed=seed_no, tenant=SECOND,
                                                                secret=SECOND_SECRET)}
    s.env["INFOCAPTION_BASE_URL"] = sims[1].url
    links = {t: seed(database_url, sim, tenant_id=None if t == 1 else t) for t, sim in sims.items()}
    s.start("web")
    s.start("worker", "--queue", "events")
    rng = random.Random(seed_no)
    kills, next_kill = [], [rng.uniform(1.0, 3.0)]
    try:
        for t, sim in sims.items():
            sim.start_traffic(200, pass_share=0.85, unmatched_share=0.1, seed=seed_no + t)
        started = time.monotonic()
        while any(generated(sim) < PER_TENANT for sim in sims.values()) or len(kills) < 10:
            for sim in sims.values():
                if generated(sim) >= PER_TENANT:
                    sim.stop_traffic()
            elapsed = time.monotonic() - started
            if len(kills) < 10 and elapsed >= next_kill[0]:
                s.kill("worker")
                kills.append(round(elapsed, 1))
                s.start("worker", "--queue", "events")
                next_kill[0] = elapsed + rng.uniform(1.5, 4.0)
            time.sleep(0.05)
        for sim in sims.values():
            sim.stop_traffic()
        figures = [settle_and_count(f"{name}: tenant {'default' if t == 1 else SECOND}", sim, s,
                                    database_url, links[t], tenant_id=t, kills=len(kills))
                   for t, sim in sims.items()]
    finally:
        for sim in sims.values():
            sim.stop()
    assert len(kills) == 10
    return figures


def test_two_tenants_at_once_while_the_worker_is_sigkilled_ten_times(settings, stack, database_url):
    reset(database_url)
    two_tenants_worker_killed(f"two tenants, worker SIGKILL ×10 during 2 × {PER_TENANT:,} events",
                              stack(WEB_CONCURRENCY=2, BATCH_SIZE=200), database_url, 12)


def test_worker_sigkilled_ten_times_during_20000_events(settings, stack, database_url):
    reset(database_url)
    kill_worker_ten_times("worker SIGKILL ×10 during 20,000 events",
                          stack(WEB_CONCURRENCY=2, BATCH_SIZE=200), database_url, 11)


def _rabbitmq(action: str) -> None:
    sh("rabbitmqctl", f"{action}_app")
    if action == "start":
        sh("rabbitmqctl", "await_startup")


def _pg(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    args = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    if action == "stop":
        args += ["-m", "fast"]
    sh(*args)


def run_with_outage(name: str, server, stack, database_url: str, seed_no: int) -> tuple[dict, object]:
    """Steady traffic; six seconds in, stop the server for six seconds; then count."""
    reset(database_url)
    s = stack(WEB_CONCURRENCY=2)
    sim = make_sim(s.url, seed=seed_no)
    s.env["INFOCAPTION_BASE_URL"] = sim.url
    links = seed(database_url, sim)
    s.start("web")
    s.start("worker", "--queue", "events")
    outage = {}

    def during(elapsed):
        if "stopped" not in outage and elapsed >= 6:
            server("stop")
            outage["stopped"] = elapsed
        elif "started" not in outage and "stopped" in outage and elapsed >= outage["stopped"] + 6:
            server("start")
            outage["started"] = elapsed

    try:
        run_traffic(sim, 6_000, rate=250, during=during)
        if "started" not in outage:
            server("start")
        figures = settle_and_count(name, sim, s, database_url, links,
                                   outage_s=round(outage.get("started", 0) - outage.get("stopped", 0), 1))
    finally:
        try:
            server("start")  # whatever happened, leave the server running
        except subprocess.CalledProcessError:
            pass
        sim.stop()
    return figures, s


def test_rabbitmq_stopped_and_started_during_ingest(settings, stack, database_url):
    figures, _ = run_with_outage("RabbitMQ stopped and started during ingest", _rabbitmq, stack,
                                 database_url, 12)
    assert figures["answered 503"] > 0  # the outage was seen, and those webhooks came again


def test_postgresql_stopped_and_started_while_the_worker_runs(settings, stack, database_url):
    _, s = run_with_outage("PostgreSQL stopped and started while the worker runs", _pg, stack,
                           database_url, 13)
    assert s.procs["worker"].poll() is None  # it waited; it did not die


# --- every event ten times, in shuffled order ---------------------------------------------


def _order_events(seed: int) -> list[dict]:
    """Results (some failing first and passing later) around an unpublish/publish of course A.

    Each employee has at most one passing result per course, so that the only order questions
    are the ones rules 1, 2, 6 and 9 of docs/rules.md answer (see docs/RELIABILITY.md).
    """
    rng = random.Random(seed)
    course_a = {"id": 7001, "name": "HLR vuxen", "guideType": 14}
    course_b = {"id": 7002, "name": "Brandskydd", "guideType": 18}
    base = datetime(2026, 10, 1, 8, tzinfo=timezone.utc)
    unpublished_at, published_at = base + timedelta(days=10), base + timedelta(days=20)
    events = [
        {"type": "course.unpublished", "timestamp": unpublished_at.isoformat(), "data": {"course": course_a}},
        {"type": "course.published", "timestamp": published_at.isoformat(), "data": {"course": course_a}},
    ]
    for i in range(400):
        email = f"person.{i % 200:04d}@kommun.example" if i % 10 else f"stranger.{i}@elsewhere.example"
        course = course_a if i < 200 else course_b
        completed = base + timedelta(days=rng.uniform(0, 30))
        versions = [True] if rng.random() < 0.7 else ([False, True] if rng.random() < 0.6 else [False])
        for v, passed in enumerate(versions):
            events.append({
                "type": "course.completed",
                "timestamp": (completed + timedelta(hours=v)).isoformat(),
                "data": {"resultId": f"r-{i}", "course": course,
                         "user": {"email": email.upper() if i % 3 == 0 else email, "firstName": "A", "lastName": "B"},
                         "passed": passed, "score": 90 if passed else 10, "completedAt": completed.isoformat()},
            })
    return events


def _seed_order(database_url: str) -> None:
    with db.connect(database_url) as conn, conn.transaction():
        people_employees.create_employees(conn, [{"email": f"person.{i:04d}@kommun.example"} for i in range(200)],
                               actor="chaos", tz=TZ)
        main = competences.create_competence(conn, {"name": "M", "kind": "main_group"}, actor="chaos")
        group = competences.create_competence(conn, {"name": "G", "kind": "group", "parent_id": main["id"]}, actor="chaos")
        for course_id, days, window in ((7001, 365, None), (7001, None, None), (7002, 730, 90)):
            conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (%s, 'K', 14) ON CONFLICT DO NOTHING", (course_id,))
            comp = competences.create_competence(conn, {"name": f"K{course_id}-{days}", "kind": "competence",
                                                  "parent_id": group["id"], "default_valid_days": days,
                                                  "renewal_window_days": window}, actor="chaos")
            catalog_links.create_link(conn, course_id, comp["id"], actor="chaos")
        conn.execute("DELETE FROM outbox")


def _outcome(database_url: str) -> dict:
    with psycopg.connect(database_url) as c:
        return {
            "grants": sorted(c.execute(
                "SELECT e.email_normalized, g.competence_id, g.valid_from, g.valid_to, g.result_id"
                " FROM grants g JOIN employees e ON e.id = g.employee_id").fetchall()),
            "results": sorted(c.execute("SELECT id, status, passed FROM results").fetchall()),
            "course": c.execute("SELECT status FROM courses WHERE id = 7001").fetchone()[0],
        }


def test_every_event_ten_times_in_shuffled_order_gives_the_ordered_outcome(settings, stack, database_url):
    from service.ingest.schema import parse_event

    events = _order_events(14)
    # One ordered delivery, event by event, straight through the pipeline: the reference.
    reset(database_url)
    _seed_order(database_url)
    ordered = sorted(events, key=lambda e: e["timestamp"])
    with db.connect(database_url) as conn:
        for i, body in enumerate(ordered):
            with conn.transaction():
                queued = parse_event(body)
                queued["webhook_id"] = f"ordered-{i}"
                pipeline.process_events(conn, [queued], tz=TZ)
    reference = _outcome(database_url)
    assert reference["course"] == "published"

    # Ten deliveries of each, shuffled, through the real web and worker processes.
    reset(database_url)
    _seed_order(database_url)
    s = stack(WEB_CONCURRENCY=2, BATCH_SIZE=50)
    sim = make_sim(s.url, seed=14, employees=10, courses=1)
    s.start("web")
    s.start("worker", "--queue", "events")
    rng = random.Random(14)
    deliveries = []
    for i, body in enumerate(events):
        ids = [f"evt-{i}"] * 7 + [f"evt-{i}-again-{k}" for k in range(3)]  # re-sent as new messages too
        deliveries += [(body, msg_id) for msg_id in ids]
    rng.shuffle(deliveries)
    try:
        for body, msg_id in deliveries:
            sim.sender.send(body, msg_id=msg_id)
        assert sim.drain_webhooks(timeout=600)
        distinct_ids = len({m for _, m in deliveries})
        wait_for(lambda: count(database_url, "SELECT count(*) FROM webhook_receipts") == distinct_ids,
                 timeout=300, interval=0.5, message="every delivery processed")
        time.sleep(1.0)
        outcome = _outcome(database_url)
        answers = dict(sim.sender.answers)
        record("every event 10× in shuffled order", **{
            "events sent": len(deliveries), "answered 202": answers.get(202, 0),
            "answered 503": answers.get(503, 0), "processed": count(database_url, "SELECT count(*) FROM webhook_receipts"),
            "lost": 0 if outcome["results"] == reference["results"] else "DIFFERENT",
            "duplicated": 0 if outcome["grants"] == reference["grants"] else "DIFFERENT",
            "5xx": sum(n for st, n in answers.items() if st >= 500 and st != 503),
            "dead-lettered": count(database_url, "SELECT count(*) FROM dead_letters"),
            "grants": len(outcome["grants"]),
            "notes": f"{len(events)} events, {distinct_ids} webhook ids; outcome identical to one ordered delivery",
        })
        assert outcome == reference
    finally:
        sim.stop()


# --- a backfill and a stream of webhooks for the same course at once ----------------------


def test_backfill_and_webhooks_for_the_same_course_at_once(settings, stack, database_url):
    reset(database_url)
    s = stack(WEB_CONCURRENCY=2)
    sim = make_sim(s.url, seed=15, courses=1, results_per_course=5_000, employees=1_500)
    s.env["INFOCAPTION_BASE_URL"] = sim.url
    course = sim.data.published_courses()[0]
    with db.connect(database_url) as conn, conn.transaction():
        people_employees.create_employees(conn, [{"email": e.email} for e in sim.data.employees], actor="chaos", tz=TZ)
        conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (%s, %s, %s)",
                     (course.id, course.name, course.guide_type))
        main = competences.create_competence(conn, {"name": "M", "kind": "main_group"}, actor="chaos")
        group = competences.create_competence(conn, {"name": "G", "kind": "group", "parent_id": main["id"]}, actor="chaos")
        comp = competences.create_competence(conn, {"name": "K", "kind": "competence", "parent_id": group["id"],
                                              "default_valid_days": 365}, actor="chaos")
    s.start("web")
    s.start("worker")
    s.start("scheduler")
    try:
        sim.start_traffic(150, pass_share=0.85, unmatched_share=0.1, seed=15)
        time.sleep(1.0)  # webhooks flow; now the link, whose backfill runs beside them
        with db.connect(database_url) as conn, conn.transaction():
            link = catalog_links.create_link(conn, course.id, comp["id"], actor="chaos")
        links = {link["id"]: (course.id, comp["id"])}
        wait_for(lambda: count(database_url, "SELECT count(*) FROM links WHERE backfill_state = 'running'"
                               " OR backfill_state = 'done'") == 1, timeout=120, message="the backfill started")
        while generated(sim) < 5_000 + 4_000:
            time.sleep(0.1)
        sim.stop_traffic()
        wait_for(lambda: count(database_url, "SELECT count(*) FROM links WHERE backfill_state = 'done'") == 1,
                 timeout=300, interval=0.5, message="the backfill done")
        live = generated(sim) - 5_000
        assert sim.drain_webhooks(timeout=600)
        wait_for(lambda: count(database_url, "SELECT count(*) FROM webhook_receipts") >= live,
                 timeout=300, interval=0.5, message="the webhooks processed")
        time.sleep(1.0)
        checked = check_grants(sim, links, database_url)
        result_ids = {r["resultId"] for r in sim.data.all_results()}
        stored = count(database_url, "SELECT count(*) FROM results")
        answers = dict(sim.sender.answers)
        figures = {
            "events sent": live, "answered 202": answers.get(202, 0), "answered 503": answers.get(503, 0),
            "processed": count(database_url, "SELECT count(*) FROM webhook_receipts"),
            "lost": len(result_ids) - stored, "duplicated": checked["extra"], "missing grants": checked["missing"],
            "5xx": sum(n for st, n in answers.items() if st >= 500 and st != 503),
            "dead-lettered": count(database_url, "SELECT count(*) FROM dead_letters"),
            "grants": checked["grants"],
            "notes": f"backfill of 5,000 historical results while {live} webhooks arrived for the same course",
        }
        record("backfill and webhooks for the same course at once", **figures)
        assert figures["lost"] == 0 and figures["duplicated"] == 0 and checked["missing"] == 0, figures
        assert figures["dead-lettered"] == 0 and figures["5xx"] == 0, figures
    finally:
        sim.stop()

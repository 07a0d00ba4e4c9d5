"""Part 6: the reports at size (100,000 employees, 10,000,000 grants as periods).

The data set is built set-based in a copy of the template (`reports_insert_grants` in
bench/bench.sql: indexes and triggers off, one `INSERT … SELECT`, indexes rebuilt, the coverage
summaries rebuilt and folded as the scheduler folds them, `VACUUM (FREEZE, ANALYZE)`). Each
endpoint is then called through the Flask test client (the service's own app on a pool of
that database: token check, query, JSON) `repeats` times, and its server time taken; the
queries' `EXPLAIN (ANALYZE, BUFFERS)` plans go into the report.
"""
from __future__ import annotations

import random
import statistics
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from bench.common import Run, db_url, say
from bench.data import EMPLOYEES, q
from service.platform import db, tenancy

COMPETENCES = 50  # x 100,000 employees x 2 periods = 10,000,000 grants (--quick: 2)
TZ = ZoneInfo("Europe/Stockholm")


def build(url: str, today, competences: int = COMPETENCES) -> dict:
    """Fill the grants and the summaries; return what was built and how long it took."""
    started = time.monotonic()
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")  # no triggers: valid by construction
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute(q("reports_drop_grant_indexes"))
        conn.execute(q("reports_drop_other_indexes"))
        conn.execute(q("reports_insert_grants"), {"competences": competences, "today": today})
        for name in ("reports_restore_pair_index",
                     "reports_restore_competence_index", "reports_restore_expiring_index"):
            conn.execute(q(name))
        conn.execute("SELECT setval('grants_id_seq', (SELECT max(id) FROM grants))")
    generated = time.monotonic() - started
    with psycopg.connect(url) as conn:
        conn.execute(q("reports_rebuild_summaries"), {"cutoff": today - timedelta(days=2)})
    summarised = time.monotonic() - started - generated
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE) grants")
        conn.execute("VACUUM ANALYZE coverage_active_edges, coverage_latest_grants")
        counts = conn.execute(q("reports_summary_rows")).fetchone()
    return {"grants": counts[2], "revoked": counts[3], "summary_rows": {"active_edges": counts[0],
            "latest_grants": counts[1]}, "generate_s": round(generated, 1),
            "summaries_s": round(summarised, 1)}


def _percentiles(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[max(0, int(len(ms) * 0.95) - 1)], 2), "max_ms": round(ms[-1], 2)}


def _plans(url: str, today, employee: int, competence: int) -> dict:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement the measured endpoints run."""
    statements = {
        "expiring page (report_expiring_page)": ("report_expiring_page", {
            "today": today, "within_days": 90, "competence_id": None, "limit": 20, "offset": 0}),
        "expiring total (report_expiring_count)": ("report_expiring_count", {
            "today": today, "within_days": 90, "competence_id": None}),
        "expiring page, one competence": ("report_expiring_page", {
            "today": today, "within_days": 90, "competence_id": competence, "limit": 20, "offset": 0}),
        "coverage page (report_coverage_page)": ("report_coverage_page", {
            "today": today, "within_days": 90, "limit": 20, "offset": 0}),
        "one employee's grants (admin_grants_page)": ("admin_grants_page", {
            "employee_id": employee, "competence_id": None, "status": None, "id": None,
            "day": today, "limit": 20, "offset": 0}),
        "one employee's grants, total (admin_grants_count)": ("admin_grants_count", {
            "employee_id": employee, "competence_id": None, "status": None, "id": None,
            "day": today}),
    }
    out = {}
    # As the application runs them: its role, the tenant bound, row-level security applied.
    with db.tenant_connection(url, tenancy.DEFAULT_ID) as conn:
        for label, (name, params) in statements.items():
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + db.q(name), params).fetchall()
            out[label] = "\n".join(r["QUERY PLAN"] for r in rows)
    return out


CONSOLE_P95_MS = 100  # issue 19: the console's links page, a profile and the expiring report


def _console_pages(client, pool, employees: list[int], repeats: int) -> dict:
    """Server time of the console pages (docs/console.md) on the same data, signed in."""
    import re

    from service.access.tokens import PERMISSIONS
    from service.console import users

    with tenancy.scope(tenancy.DEFAULT_ID), pool.connection() as conn:  # the bench's organisation
        users.ensure_user(conn, "bench-console", "bench-console-password", list(PERMISSIONS), actor="bench")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True))[1]
    signed_in = client.post("/login", data={"username": "bench-console", "password": "bench-console-password",
                                            "csrf_token": token})
    if signed_in.status_code != 302:
        raise RuntimeError(f"console sign-in answered {signed_in.status_code}")
    pages = {
        "console_links": lambda i: "/links",
        "console_employee": lambda i: f"/employees/{employees[i]}",
        "console_expiring": lambda i: "/reports/expiring?within_days=90",
    }
    timings = {}
    for label, path in pages.items():
        for i in range(5):  # warm: plans, caches, templates
            assert client.get(path(i)).status_code == 200
        ms = []
        for i in range(repeats):
            started = time.perf_counter()
            r = client.get(path(i))
            ms.append((time.perf_counter() - started) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"{path(i)} answered {r.status_code}")
        timings[label] = _percentiles(ms) | {"path": path(0), "target_p95_ms": CONSOLE_P95_MS,
                                             "within_target": sorted(ms)[max(0, int(len(ms) * 0.95) - 1)]
                                             < CONSOLE_P95_MS}
        say(f"  reports: {label} p50 {timings[label]['p50_ms']} ms, p95 {timings[label]['p95_ms']} ms "
            f"(target < {CONSOLE_P95_MS} ms)")
    return timings


def measure(run: Run, template: str, *, repeats: int = 50, competences: int = COMPETENCES) -> dict:
    from bench.apps import _QueuesNothing
    from service.access import tokens
    from service.access.tokens import INTEGRATIONS
    from service.app import create_app
    from service.platform import config as config_mod

    name, _url = run.database("reports", template)
    url = db_url(name)
    today = datetime.now(TZ).date()
    say(f"  reports: building {EMPLOYEES * competences * 2:,} grants as periods")
    out = build(url, today, competences)
    say(f"  reports: {out['grants']:,} grants in {out['generate_s']} s, summaries in {out['summaries_s']} s "
        f"({out['summary_rows']})")
    settings = config_mod.load(run.env(url, run.prefix("reports")))
    pool = db.make_pool(url, max_size=2, name="bench-reports")
    pool.wait(timeout=30)
    try:
        with tenancy.scope(tenancy.DEFAULT_ID), pool.connection() as conn:  # the bench's organisation
            token = tokens.create(conn, "bench-reports", [INTEGRATIONS], actor="bench")
            competence = conn.execute("SELECT min(competence_id) AS c FROM grants").fetchone()["c"]
        app = create_app(settings, pool=pool, publisher=_QueuesNothing())
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        rng = random.Random(6)
        employees = [rng.randrange(1, EMPLOYEES + 1) for _ in range(repeats)]
        endpoints = {
            "expiring": lambda i: "/api/v1/reports/expiring?within_days=90",
            "expiring_competence": lambda i: f"/api/v1/reports/expiring?competence_id={competence}",
            "coverage": lambda i: "/api/v1/reports/coverage",
            "employee_grants": lambda i: f"/api/v1/grants?employee_id={employees[i]}",
        }
        timings = {}
        for label, path in endpoints.items():
            for i in range(5):  # warm: plans, caches
                assert client.get(path(i), headers=headers).status_code == 200
            ms = []
            for i in range(repeats):
                started = time.perf_counter()
                r = client.get(path(i), headers=headers)
                ms.append((time.perf_counter() - started) * 1000)
                if r.status_code != 200:
                    raise RuntimeError(f"{path(i)} answered {r.status_code}: {r.get_data(as_text=True)[:200]}")
            timings[label] = _percentiles(ms) | {"path": path(0), "rows": len(r.get_json()),
                                                 "x_pagination": r.headers.get("X-Pagination")}
            say(f"  reports: {label} p50 {timings[label]['p50_ms']} ms, p95 {timings[label]['p95_ms']} ms")
        out["timings"] = timings
        out["console"] = _console_pages(client, pool, employees, repeats)
        out["plans"] = _plans(url, today, employees[0], competence)
    finally:
        pool.close()
    return out

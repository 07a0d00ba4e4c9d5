"""Fixtures for the InfoCaption room: the simulator over real HTTP, the service's web app over
real HTTP (so the simulator's webhooks reach it), and helpers to set up links."""
from __future__ import annotations

import dataclasses
import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from werkzeug.serving import make_server

from service.people.email import normalize_email
from service.infocaption.client import InfoCaptionClient
from service.demo.simulator import DataSet, Simulator, generate
from tests.conftest import SECRET

TZ = ZoneInfo("Europe/Stockholm")
FAST_RETRIES = (0.2, 0.5, 1.0, 2.0)


@pytest.fixture
def make_sim():
    """Start simulators on ephemeral ports; all are stopped at the end of the test."""
    started: list[Simulator] = []

    def start(data: DataSet | None = None, *, webhook_url: str | None = None, **kwargs) -> Simulator:
        kwargs.setdefault("retry_schedule", FAST_RETRIES)
        sim = Simulator(data if data is not None else generate(1, courses=3, results_per_course=50,
                                                               employees=30),
                        webhook_url=webhook_url, webhook_secret=SECRET if webhook_url else None,
                        **kwargs)
        started.append(sim.start())
        return sim

    yield start
    for sim in started:
        sim.stop()


def settings_for(settings, sim: Simulator):
    """The test's settings, pointed at a running simulator."""
    return dataclasses.replace(settings, infocaption_base_url=sim.url,
                               infocaption_client_id=sim.client_id,
                               infocaption_client_secret=sim.client_secret)


def client_for(sim: Simulator, **kwargs) -> InfoCaptionClient:
    kwargs.setdefault("backoff_first_s", 0.01)
    kwargs.setdefault("backoff_cap_s", 0.05)
    return InfoCaptionClient(sim.url, sim.client_id, sim.client_secret, **kwargs)


@pytest.fixture
def web_url(app):
    """The service's Flask app served over real HTTP on an ephemeral port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


def add_staff(conn, data: DataSet) -> dict[str, int]:
    """The data set's staff as employees; returns normalised email -> employee id."""
    rows = conn.execute(
        "INSERT INTO employees (email, email_normalized, first_name, last_name)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) RETURNING id, email_normalized",
        ([e.email for e in data.employees], [normalize_email(e.email) for e in data.employees],
         [e.first_name for e in data.employees], [e.last_name for e in data.employees]),
    ).fetchall()
    return {r["email_normalized"]: r["id"] for r in rows}


def add_link(conn, course, *, valid_days: int | None = 730, name: str = "HLR vuxen",
             window: int | None = None) -> dict:
    """A competence linked to a course (as the admin API does: link + outbox row)."""
    conn.execute(
        "INSERT INTO courses (id, name, guide_type) VALUES (%s, %s, %s) ON CONFLICT (tenant_id, id) DO NOTHING",
        (course.id, course.name, course.guide_type))
    main = conn.execute(
        "INSERT INTO competences (name, kind) VALUES ('Vård', 'main_group') RETURNING id").fetchone()["id"]
    group = conn.execute("INSERT INTO competences (parent_id, name, kind) VALUES (%s, 'Akut', 'group')"
                         " RETURNING id", (main,)).fetchone()["id"]
    comp = conn.execute(
        "INSERT INTO competences (parent_id, name, kind, default_valid_days, renewal_window_days)"
        " VALUES (%s, %s, 'competence', %s, %s) RETURNING id", (group, name, valid_days, window),
    ).fetchone()["id"]
    link = conn.execute(
        "INSERT INTO links (course_id, competence_id, created_by) VALUES (%s, %s, 'test') RETURNING *",
        (course.id, comp)).fetchone()
    return link


def expected_grants(data: DataSet, course_id: int, staff: dict[str, int], valid_days: int | None = 730,
                    window: int | None = None) -> dict[int, list[tuple]]:
    """What a backfill must grant: employee id -> the periods (valid_from, valid_to), oldest first.

    The passes of each employee in completion order, through the reference model's rule
    (tests/model.py): a new period after expiry (or within the window), nothing while held.
    """
    from tests.model import next_period

    passes: dict[int, list[tuple[datetime, str]]] = {}
    for r in data.all_results(course_id):
        try:
            completed = datetime.fromisoformat(r["completedAt"])
        except (TypeError, ValueError):
            continue
        if r.get("passed") is not True or completed.tzinfo is None:
            continue
        emp = staff.get(normalize_email(r["user"]["email"]))
        if emp is not None:
            passes.setdefault(emp, []).append((completed, str(r["resultId"])))
    out = {}
    for emp, done in passes.items():
        periods: list[tuple] = []
        for completed, rid in sorted(done):
            made = next_period(completed.astimezone(TZ).date(), valid_days, window, periods)
            if made is not None:
                periods = sorted([*periods, (*made, rid)], key=lambda p: p[0])
        out[emp] = [(a, b) for a, b, _ in periods]
    return out


def periods_of(conn, competence_id: int) -> dict[int, list[tuple]]:
    """The grants of a competence: employee id -> the periods (valid_from, valid_to), oldest first."""
    out: dict[int, list[tuple]] = {}
    for r in conn.execute("SELECT employee_id, valid_from, valid_to FROM grants WHERE competence_id = %s"
                          " ORDER BY valid_from", (competence_id,)):
        out.setdefault(r["employee_id"], []).append((r["valid_from"], r["valid_to"]))
    return out


def classify(data: DataSet, course_id: int, staff: dict[str, int]) -> dict[str, int]:
    """How many of a course's (readable) results are granted, unmatched and failed."""
    counts = {"granted": 0, "unmatched": 0, "failed": 0}
    for r in data.all_results(course_id):
        if str(r.get("resultId")).startswith("bad-"):
            continue  # the simulator's malformed records: skipped by the client
        if not r["passed"]:
            counts["failed"] += 1  # a failed result grants nothing, matched or not
        elif normalize_email(r["user"]["email"]) in staff:
            counts["granted"] += 1
        else:
            counts["unmatched"] += 1
    return counts


COUNTERS = ("granted", "already_held", "not_passed", "unmatched", "errors")


def expected_counters(data: DataSet, course_id: int, staff: dict[str, int], *, errors: int = 0,
                      held: int = 0) -> dict[str, int]:
    """The counters a backfill of a link of a fresh competence must end with (docs/admin-api.md).

    granted: one result per period made (docs/rules.md, rule 3), less the `held` employees
    who held the competence before; every other passed and matched result is already_held."""
    counts = classify(data, course_id, staff)
    granted = sum(len(p) for p in expected_grants(data, course_id, staff).values()) - held
    return {"granted": granted, "already_held": counts["granted"] - granted,
            "not_passed": counts["failed"], "unmatched": counts["unmatched"], "errors": errors}


def counters(row: dict) -> dict[str, int]:
    """A link row's counters by their names in docs/admin-api.md."""
    return {k: row[f"backfill_{k}"] for k in COUNTERS}


def link_row(conn, link_id: int) -> dict:
    return conn.execute("SELECT * FROM links WHERE id = %s", (link_id,)).fetchone()


def resume_page(conn, link_id: int) -> int | None:
    """Where the link's backfill resumes: the first page its open units have not stored."""
    return conn.execute(
        "SELECT min(u.next_page) AS page FROM backfill_units u JOIN links l ON l.id = u.link_id"
        " WHERE u.link_id = %s AND u.done_at IS NULL"
        " AND u.run = (l.backfill_checkpoint ->> 'run')::int", (link_id,)).fetchone()["page"]

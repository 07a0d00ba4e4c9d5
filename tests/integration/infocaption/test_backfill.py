"""Backfill on link creation (docs/rules.md, rule 4) against the simulator over real HTTP, on real
PostgreSQL and RabbitMQ."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from service.platform import messaging
from service.grants.pipeline import ResultRecord, apply_results
from service.demo.simulator import generate
from service.platform.messaging import Publisher
from service.platform.metrics import INFOCAPTION_BAD_RECORDS
from tests.conftest import SECRET, wait_for
from tests.integration.infocaption.conftest import (
    resume_page as resume_at,
    TZ, add_link, add_staff, classify, client_for, counters, expected_counters, expected_grants, periods_of,
    link_row, settings_for)
from workers.backfill import Backfill, BackfillWorker

pytestmark = pytest.mark.integration

COUNTERS = ("backfill_state", "backfill_total", "backfill_processed", "backfill_granted",
            "backfill_already_held", "backfill_not_passed", "backfill_not_published",
            "backfill_unmatched", "backfill_errors", "backfill_error")


def grants_of(conn, competence_id):
    return {r["employee_id"]: r for r in conn.execute(
        "SELECT * FROM grants WHERE competence_id = %s", (competence_id,)).fetchall()}


def snapshot(conn, link_id):
    """Everything a second run must leave as it is (timestamps of changes included)."""
    grants = conn.execute("SELECT id, employee_id, competence_id, valid_from, valid_to, source,"
                          " result_id, updated_at FROM grants ORDER BY id").fetchall()
    results = conn.execute("SELECT id, status, employee_id, updated_at FROM results ORDER BY id").fetchall()
    link = link_row(conn, link_id)
    return grants, results, {k: link[k] for k in COUNTERS}


def queue_depth(s, kind):
    with messaging.connection(s) as broker:
        q = messaging.topology(s).queue(kind)(broker.channel())
        _, depth, _ = q.queue_declare(passive=True)
        return depth


def test_backfill_of_10000_results_grants_exactly_the_passed_and_matched(conn, settings, pool, make_sim):
    data = generate(7, courses=1, results_per_course=10_000, employees=1500)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    course = data.courses[4711]
    staff = add_staff(conn, data)
    link = add_link(conn, course, valid_days=730)
    assert link["backfill_state"] == "pending"

    worker = BackfillWorker(s, pool, page_size=1000)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    publisher = Publisher(s)
    try:
        publisher.publish({"link_id": link["id"]}, kind=messaging.BACKFILL)
        wait_for(lambda: link_row(conn, link["id"])["backfill_state"] == "done", timeout=60,
                 message="the backfill done")
        # acked only after the link was done: nothing left in the queue
        wait_for(lambda: queue_depth(s, messaging.BACKFILL) == 0, message="backfill queue drained")
    finally:
        worker.stop()
        thread.join(timeout=30)
        publisher.close()

    # grants exactly for the passed and matched, dated by the first pass in Stockholm time
    want = expected_grants(data, course.id, staff, valid_days=730)
    assert periods_of(conn, link["competence_id"]) == want
    got = grants_of(conn, link["competence_id"])
    assert any(len(p) > 1 for p in want.values())  # new periods after expiry
    assert {(g["source"], g["course_id"], g["link_id"]) for g in got.values()} == {
        ("backfill", course.id, link["id"])}
    # the time zone matters for some of them: 23:xx UTC is the next day in Stockholm
    late = [r for r in data.all_results(course.id)
            if r["passed"] and datetime.fromisoformat(r["completedAt"]).astimezone(timezone.utc).hour == 23]
    assert late and any(datetime.fromisoformat(r["completedAt"]).astimezone(TZ).date()
                        != datetime.fromisoformat(r["completedAt"]).astimezone(timezone.utc).date()
                        for r in late)

    # every result kept, the unmatched ones with status 'unmatched' (the unmatched report)
    counts = classify(data, course.id, staff)
    statuses = {r["status"]: r["n"] for r in conn.execute(
        "SELECT status, count(*) AS n FROM results GROUP BY status").fetchall()}
    assert statuses == {k: v for k, v in counts.items() if v}
    assert counts["unmatched"] > 0 and counts["failed"] > 0

    # the counters add up: processed = total = granted + already_held + not_passed + unmatched
    # + errors; granted counts grants created (one per period), the other passes already_held
    row = link_row(conn, link["id"])
    periods = sum(len(p) for p in want.values())
    assert row["backfill_total"] == row["backfill_processed"] == 10_000
    assert counters(row) == expected_counters(data, course.id, staff)
    assert row["backfill_granted"] == periods and row["backfill_already_held"] > 0
    assert row["backfill_started_at"] <= row["backfill_finished_at"]
    assert row["backfill_checkpoint"]["grants_created"] == periods

    # a second run changes nothing, and says so: every passed result is already held
    before = snapshot(conn, link["id"])
    again = Backfill(s, pool, client_for(sim), page_size=1000).run(link["id"], again=True)
    assert again["backfill_state"] == "done"
    assert again["backfill_checkpoint"]["grants_created"] == 0
    assert snapshot(conn, link["id"])[:2] == before[:2]
    first = counters(row)
    assert counters(again) == dict(first, granted=0,
                                   already_held=first["granted"] + first["already_held"])
    assert again["backfill_processed"] == again["backfill_total"] == 10_000


def _cli(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_backfill_killed_half_way_resumes_without_duplicates_or_gaps(conn, settings, pool, make_sim):
    data = generate(11, courses=1, results_per_course=5000, employees=800)
    sim = make_sim(data)
    sim.inject_delay(0.05, times=10_000, path="/API/courses/")  # slow pages: time to kill it
    s = settings_for(settings, sim)
    course = data.courses[4711]
    staff = add_staff(conn, data)
    link = add_link(conn, course)
    env = dict(os.environ, DATABASE_URL=s.database_url, BROKER_URL=s.broker_url,
               INFOCAPTION_BASE_URL=sim.url, INFOCAPTION_CLIENT_ID=sim.client_id,
               INFOCAPTION_CLIENT_SECRET=sim.client_secret, INFOCAPTION_WEBHOOK_SECRETS=SECRET,
               QUEUE_PREFIX=s.queue_prefix, TIME_ZONE=s.time_zone, LOG_LEVEL="WARNING")
    proc = subprocess.Popen([_cli("competence-bridge"), "backfill", "--link", str(link["id"]),
                             "--page-size", "250"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: proc.poll() is not None or link_row(conn, link["id"])["backfill_processed"] >= 1500,
                 timeout=60, message="the backfill half-way")
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # A request the killed process had in flight (the page it read ahead included) is still
        # answered after the kill; let the simulator finish it before counting what it served.
        time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()

    killed = link_row(conn, link["id"])
    assert killed["backfill_state"] == "running"
    assert 1500 <= killed["backfill_processed"] < 5000
    resume_page = resume_at(conn, link["id"])
    assert resume_page > 1
    stored_before = conn.execute("SELECT count(*) AS n FROM results").fetchone()["n"]
    assert stored_before < 5000
    asked = len(sim.requests(path="/API/courses/4711/results"))

    # restarted (a different page size is ignored: the checkpoint's offsets hold)
    row = Backfill(s, pool, client_for(sim), page_size=1000).run(link["id"])
    # (the killed process's last request may still have been answered after `asked`)
    resumed = [int(p.split("page=")[1].split("&")[0])
               for p in sim.requests(path="/API/courses/4711/results")[asked:]]
    assert all(p.endswith("hitsPerPage=250") for p in sim.requests(path="/API/courses/"))
    assert min(resumed) == resume_page  # it resumed where it stopped, not at page 1
    assert sorted(set(resumed)) == list(range(resume_page, 21))
    assert all(resumed.count(p) == 1 for p in range(resume_page + 1, 21))

    assert row["backfill_state"] == "done"
    assert conn.execute("SELECT count(*) AS n FROM results").fetchone()["n"] == 5000  # no gaps
    want = expected_grants(data, course.id, staff)
    assert periods_of(conn, link["competence_id"]) == want  # no duplicates
    assert (row["backfill_total"], row["backfill_processed"]) == (5000, 5000)
    assert counters(row) == expected_counters(data, course.id, staff)


def test_backfill_survives_429_and_500_and_a_lost_token(conn, settings, pool, make_sim):
    data = generate(3, courses=1, results_per_course=1200, employees=200)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    course = data.courses[4711]
    staff = add_staff(conn, data)
    link = add_link(conn, course)
    sim.inject(503, times=1, path="/oauth2/token")
    sim.inject(429, times=2, retry_after=1, path="/API/courses/")
    sim.inject(500, times=3, path="/API/courses/")
    backfill = Backfill(s, pool, client_for(sim), page_size=300)

    pages = []

    def on_progress(row):
        pages.append(row)
        if len(pages) == 2:
            # The start and page 1 reported. Pages 2 and 3 may be read already (two pages
            # commit at once, and one is read ahead); page 4 is not: a call after this answers
            # 401, renewed, not failed.
            sim.expire_tokens()

    backfill.on_progress = on_progress
    row = backfill.run(link["id"])
    assert row["backfill_state"] == "done"
    assert (sim.served(503, "/oauth2"), sim.served(429), sim.served(500), sim.served(401)) == (1, 2, 3, 1)
    assert periods_of(conn, link["competence_id"]) == expected_grants(data, course.id, staff)
    assert row["backfill_processed"] == row["backfill_total"] == 1200


def test_bad_records_are_skipped_counted_and_masked(conn, settings, pool, make_sim, caplog):
    data = generate(5, courses=1, results_per_course=300, employees=50, bad_records=3)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    course = data.courses[4711]
    staff = add_staff(conn, data)
    link = add_link(conn, course)
    bad_before = INFOCAPTION_BAD_RECORDS._value.get()
    row = Backfill(s, pool, client_for(sim), page_size=100).run(link["id"])
    assert row["backfill_state"] == "done"
    assert INFOCAPTION_BAD_RECORDS._value.get() - bad_before == 3
    assert row["backfill_processed"] == row["backfill_total"] == 303
    assert counters(row) == expected_counters(data, course.id, staff, errors=3)
    assert "medarbetare.1@kommun.example" not in caplog.text
    assert "m***@kommun.example" in caplog.text


def BAD_RECORDS(email: str, *, changed_at: datetime | None = None) -> list[dict]:
    """Records InfoCaption could serve that must neither be granted nor stop a run: the first
    six cannot be read (client.py), the last one is read but refused by the database (its id
    is too large for the primary key's index: SQLSTATE 54000)."""
    import random

    now = datetime.now(timezone.utc)
    changed = (changed_at or now).isoformat()

    def record(rid, **changes):
        base = {"resultId": rid, "user": {"email": email, "firstName": "Ny", "lastName": "Deltagare"},
                "passed": True, "score": 90, "completedAt": (changed_at or now).isoformat(),
                "changedAt": changed}
        return {k: v for k, v in dict(base, **changes).items() if v is not None}

    rng = random.Random(9)  # varied characters: an index entry that does not compress
    huge_id = "bad-" + "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(990))
    return [
        record("bad-surrogate", user={"email": email, "firstName": "\ud800"}),
        record("bad-year-9999", completedAt="9999-12-31T23:59:59+00:00"),
        record("bad-year-0001", completedAt="0001-01-01T00:00:00Z"),
        record("bad-1999", completedAt="1999-12-31T23:59:59Z"),
        record("bad-future", completedAt=(now + timedelta(days=3)).isoformat()),
        record("bad-no-completed-at", completedAt=None),
        record(huge_id),
    ]


def kept_bad_records(conn) -> list[dict]:
    return conn.execute("SELECT * FROM dead_letters WHERE queue = 'infocaption-api' ORDER BY id").fetchall()


def test_one_unreadable_or_unstorable_record_never_stops_a_backfill(conn, settings, pool, make_sim):
    data = generate(13, courses=1, results_per_course=300, employees=50)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    course = data.courses[4711]
    staff = add_staff(conn, data)
    link = add_link(conn, course)
    want_counters = expected_counters(data, course.id, staff, errors=len(BAD_RECORDS("x@y")))
    want = expected_grants(data, course.id, staff)
    # Passed by an employee who passed nothing else: a grant if any of them were stored.
    newcomer = conn.execute(
        "INSERT INTO employees (email, email_normalized) VALUES ('ny@kommun.example',"
        " 'ny@kommun.example') RETURNING id").fetchone()["id"]
    bad = BAD_RECORDS("ny@kommun.example")
    for record in bad:
        sim.add_bad_record(course.id, record)

    row = Backfill(s, pool, client_for(sim), page_size=100).run(link["id"])
    assert row["backfill_state"] == "done" and row["backfill_error"] is None
    assert counters(row) == want_counters
    assert row["backfill_processed"] == row["backfill_total"] == 300 + len(bad)
    got = periods_of(conn, link["competence_id"])
    assert got == want  # the good ones
    assert newcomer not in got
    assert conn.execute("SELECT count(*) AS n FROM results").fetchone()["n"] == 300

    # Kept for ops, in a form that could be stored; ops see them as dead letters pending.
    kept = kept_bad_records(conn)
    assert len(kept) == len(bad)
    assert {(k["payload"]["source"], k["payload"]["link_id"], k["payload"]["course_id"])
            for k in kept} == {("backfill", link["id"], course.id)}
    by_id = {k["payload"]["result_id"]: k for k in kept}
    assert "\\ud800" in by_id["bad-surrogate"]["payload"]["record"]
    assert "9999-12-31" in by_id["bad-year-9999"]["payload"]["record"]
    assert "before 2000-01-01" in by_id["bad-year-0001"]["error"]
    refused = [k for k in kept if "ProgramLimitExceeded" in k["error"]]
    assert len(refused) == 1 and refused[0]["payload"]["result_id"].startswith("bad-")
    from service.ops.dead_letters import pending_dead_letters

    assert pending_dead_letters(conn) == {"infocaption-api": len(bad)}

    # A second run reads them again: counted again, kept once.
    again = Backfill(s, pool, client_for(sim), page_size=100).run(link["id"], again=True)
    assert again["backfill_state"] == "done" and again["backfill_errors"] == len(bad)
    assert len(kept_bad_records(conn)) == len(bad)


def test_backfill_decides_stored_results_and_leaves_held_grants_alone(conn, settings, pool, make_sim):
    data = generate(6, courses=1, results_per_course=40, employees=10)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    course = data.courses[4711]
    staff = add_staff(conn, data)
    newcomer = conn.execute(
        "INSERT INTO employees (email, email_normalized) VALUES ('ny.medarbetare@kommun.example',"
        " 'ny.medarbetare@kommun.example') RETURNING id").fetchone()["id"]
    # A result InfoCaption's API does not list came by webhook before the link existed.
    early = ResultRecord("r-webhook-only", course.id, course.name, course.guide_type,
                         " Ny.Medarbetare@Kommun.example", None, None, True, 95,
                         datetime(2026, 1, 10, 23, 30, tzinfo=timezone.utc),
                         datetime(2026, 1, 10, 23, 31, tzinfo=timezone.utc), "msg-early")
    apply_results(conn, [early], source="webhook", tz=s.time_zone)
    assert conn.execute("SELECT status FROM results WHERE id = 'r-webhook-only'").fetchone()["status"] == "no_link"
    link = add_link(conn, course, valid_days=None)
    # An employee already holds the competence (registered by hand): left as it is (rule 3).
    held = next(iter(expected_grants(data, course.id, staff)))
    conn.execute("INSERT INTO grants (employee_id, competence_id, valid_from, source)"
                 " VALUES (%s, %s, '2019-05-05', 'manual')", (held, link["competence_id"]))

    row = Backfill(s, pool, client_for(sim), page_size=25).run(link["id"])
    assert row["backfill_state"] == "done"
    got = grants_of(conn, link["competence_id"])
    assert (got[held]["source"], str(got[held]["valid_from"])) == ("manual", "2019-05-05")
    assert (got[newcomer]["result_id"], got[newcomer]["webhook_id"], str(got[newcomer]["valid_from"])) == (
        "r-webhook-only", "msg-early", "2026-01-11")
    want = expected_grants(data, course.id, staff, valid_days=None)
    assert set(got) == set(want) | {newcomer}
    assert row["backfill_processed"] == 41  # the 40 the API lists and the stored one
    # granted = grants created: one per employee (it never expires), the newcomer's included,
    # the held one not
    assert row["backfill_granted"] == len(want) - 1 + 1
    passes = classify(data, course.id, staff)["granted"] + 1
    assert row["backfill_already_held"] == passes - row["backfill_granted"]
    assert sum(counters(row).values()) == 41


def test_backfill_of_a_deleted_course_fails_with_the_reason_and_flags_the_course(conn, settings, pool, make_sim):
    data = generate(8, courses=1, results_per_course=20, employees=10)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    course = data.courses[4711]
    add_staff(conn, data)
    link = add_link(conn, course)
    sim.delete_course(course.id)
    row = Backfill(s, pool, client_for(sim)).run(link["id"])
    assert row["backfill_state"] == "failed"
    assert "404" in row["backfill_error"]
    assert conn.execute("SELECT status FROM courses WHERE id = %s", (course.id,)).fetchone()["status"] == "deleted"
    assert link_row(conn, link["id"]) is not None  # the link stays, flagged by its course


def test_a_stopped_worker_leaves_the_message_unacked_and_the_next_one_resumes(conn, settings, pool, make_sim):
    data = generate(12, courses=1, results_per_course=3000, employees=400)
    sim = make_sim(data)
    sim.inject_delay(0.05, times=10_000, path="/API/courses/")
    s = settings_for(settings, sim)
    staff = add_staff(conn, data)
    link = add_link(conn, data.courses[4711])

    def start_worker():
        worker = BackfillWorker(s, pool, page_size=200)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        return worker, thread

    publisher = Publisher(s)
    publisher.publish({"link_id": link["id"]}, kind=messaging.BACKFILL)
    publisher.close()
    worker, thread = start_worker()
    wait_for(lambda: link_row(conn, link["id"])["backfill_processed"] >= 600, message="some pages")
    worker.stop()
    thread.join(timeout=30)
    stopped = link_row(conn, link["id"])
    stopped_at = resume_at(conn, link["id"])
    assert stopped["backfill_state"] == "running" and stopped["backfill_processed"] < 3000
    wait_for(lambda: queue_depth(s, messaging.BACKFILL) == 1, message="the message back in the queue")

    asked = len(sim.requests(path="/API/courses/4711/results"))
    worker, thread = start_worker()
    try:
        wait_for(lambda: link_row(conn, link["id"])["backfill_state"] == "done", timeout=60)
        wait_for(lambda: queue_depth(s, messaging.BACKFILL) == 0, message="acked once done")
    finally:
        worker.stop()
        thread.join(timeout=30)
    pages = [int(p.split("page=")[1].split("&")[0]) for p in sim.requests(path="/API/courses/4711/results")[asked:]]
    assert min(pages) == stopped_at
    assert periods_of(conn, link["competence_id"]) == expected_grants(data, 4711, staff)
    assert link_row(conn, link["id"])["backfill_processed"] == 3000

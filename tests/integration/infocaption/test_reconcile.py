"""Reconciliation, catalog refresh and the course life cycle (docs/rules.md, rules 6 and 7), with
the simulator sending webhooks to the service over real HTTP."""
from __future__ import annotations

import threading
import logging
from datetime import datetime, timedelta, timezone

import pytest

from service.people.email import normalize_email
from service.demo.commands import seed_demo_data
from service.demo.simulator import generate
from service.platform.metrics import RECONCILE_REPAIRS, RECONCILE_RUNS
from tests.conftest import wait_for
from tests.integration.infocaption.conftest import (
    TZ, add_link, add_staff, client_for, expected_grants, link_row, periods_of, settings_for)
from tests.integration.infocaption.test_backfill import BAD_RECORDS, kept_bad_records
from workers.backfill import BackfillWorker
from workers.reconcile import refresh_catalog, reconcile
from workers.scheduler import Scheduler

pytestmark = pytest.mark.integration


def result_status(conn, rid):
    row = conn.execute("SELECT status FROM results WHERE id = %s", (rid,)).fetchone()
    return row and row["status"]


def grant_of(conn, employee_id, competence_id):
    return conn.execute("SELECT * FROM grants WHERE employee_id = %s AND competence_id = %s",
                        (employee_id, competence_id)).fetchone()


def course_status(conn, course_id):
    return conn.execute("SELECT status FROM courses WHERE id = %s", (course_id,)).fetchone()["status"]


def test_a_lost_webhook_is_granted_after_one_reconciliation(conn, settings, pool, make_sim, web_url, run_worker):
    data = generate(2, courses=2, results_per_course=20, employees=10)
    sim = make_sim(data, webhook_url=f"{web_url}/webhooks/infocaption")
    s = settings_for(settings, sim)
    staff = add_staff(conn, data)
    link = add_link(conn, data.courses[4711])
    conn.execute("UPDATE links SET created_at = now() - interval '1 hour'")
    run_worker()
    first, second = data.employees[0].email, data.employees[1].email

    sent = sim.add_result(4711, first)
    # InfoCaption "lost" it, half an hour ago: long past the time a queued webhook takes
    half_an_hour_ago = datetime.now(timezone.utc) - timedelta(minutes=30)
    lost = sim.add_result(4711, f"  {second.upper()} ", send_webhook=False,
                          completed_at=half_an_hour_ago, changed_at=half_an_hour_ago)
    wait_for(lambda: grant_of(conn, staff[first], link["competence_id"]), message="the webhook's grant")
    assert sim.drain_webhooks() and sim.sender.delivered == 1
    assert result_status(conn, lost["resultId"]) is None
    assert grant_of(conn, staff[normalize_email(second)], link["competence_id"]) is None

    repairs, runs = RECONCILE_REPAIRS._value.get(), RECONCILE_RUNS.labels(outcome="ok")._value.get()
    out = reconcile(s, pool, client_for(sim))
    assert (out.courses, out.repairs, out.grants_created) == (1, 1, 1)  # the delivered one: unchanged
    grant = grant_of(conn, staff[normalize_email(second)], link["competence_id"])
    assert (grant["source"], grant["result_id"]) == ("reconciliation", lost["resultId"])
    assert grant["valid_from"] == datetime.fromisoformat(lost["completedAt"]).astimezone(TZ).date()
    assert result_status(conn, sent["resultId"]) == "granted"
    assert RECONCILE_REPAIRS._value.get() - repairs == 1
    assert RECONCILE_RUNS.labels(outcome="ok")._value.get() - runs == 1
    cursor = conn.execute("SELECT cursor FROM job_cursors WHERE name = 'reconcile:4711'").fetchone()["cursor"]
    assert datetime.fromisoformat(cursor["changed_since"]) <= datetime.now(timezone.utc)

    # the next run reads from the cursor and finds nothing new
    assert reconcile(s, pool, client_for(sim)).repairs == 0
    # a course that is not linked is not read
    assert not any("/API/courses/4712/" in p for p in sim.requests())


def test_a_result_whose_webhook_is_still_queued_is_stored_but_not_counted_as_repaired(
        conn, settings, pool, make_sim, web_url, run_worker, caplog):
    data = generate(2, courses=1, results_per_course=5, employees=5)
    sim = make_sim(data, webhook_url=f"{web_url}/webhooks/infocaption")
    s = settings_for(settings, sim)
    staff = add_staff(conn, data)
    link = add_link(conn, data.courses[4711])
    conn.execute("UPDATE links SET created_at = now() - interval '1 hour'")
    first, second = data.employees[0].email, data.employees[1].email
    # No worker yet: the webhook is accepted and waits in the queue.
    queued = sim.add_result(4711, first)
    assert sim.drain_webhooks() and sim.sender.delivered == 1
    long_ago = datetime.now(timezone.utc) - timedelta(minutes=30)
    lost = sim.add_result(4711, second, send_webhook=False, completed_at=long_ago, changed_at=long_ago)

    repairs = RECONCILE_REPAIRS._value.get()
    with caplog.at_level(logging.INFO, logger="workers.reconcile"):
        out = reconcile(s, pool, client_for(sim))
    # Both stored and granted; only the one whose webhook was lost is a repair.
    assert (out.results, out.repairs, out.ahead, out.grants_created) == (2, 1, 1, 2)
    assert RECONCILE_REPAIRS._value.get() - repairs == 1
    assert result_status(conn, queued["resultId"]) == result_status(conn, lost["resultId"]) == "granted"
    assert ("reconciliation: 1 course(s) read, 2 result(s) seen, 1 repaired, 1 ahead of their "
            "webhook, 0 error(s), 2 grant(s) created; failed courses: none") in caplog.messages

    # The queued webhook, processed now, changes nothing.
    run_worker()
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM webhook_receipts").fetchone()["n"] == 1,
             message="the queued webhook processed")
    assert conn.execute("SELECT count(*) AS n FROM grants").fetchone()["n"] == 2
    assert grant_of(conn, staff[first], link["competence_id"])["source"] == "reconciliation"


def test_a_run_that_finds_nothing_still_logs_one_line(conn, settings, pool, make_sim, caplog):
    data = generate(3, courses=1, results_per_course=3, employees=3)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    add_link(conn, data.courses[4711])  # linked now: the API's results are older, none is read
    with caplog.at_level(logging.INFO, logger="workers.reconcile"):
        out = reconcile(s, pool, client_for(sim))
    assert (out.courses, out.results, out.repairs) == (1, 0, 0)
    assert ("reconciliation: 1 course(s) read, 0 result(s) seen, 0 repaired, 0 ahead of their "
            "webhook, 0 error(s), 0 grant(s) created; failed courses: none") in caplog.messages


def test_unreadable_and_unstorable_records_are_counted_kept_and_the_run_goes_on(
        conn, settings, pool, make_sim, caplog):
    data = generate(3, courses=1, results_per_course=3, employees=3)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    staff = add_staff(conn, data)
    link = add_link(conn, data.courses[4711])
    conn.execute("UPDATE links SET created_at = now() - interval '1 hour'")
    long_ago = datetime.now(timezone.utc) - timedelta(minutes=30)
    for record in BAD_RECORDS(data.employees[0].email, changed_at=long_ago):
        sim.add_bad_record(4711, record)
    good = sim.add_result(4711, data.employees[1].email, completed_at=long_ago, changed_at=long_ago,
                          send_webhook=False)

    with caplog.at_level(logging.INFO, logger="workers.reconcile"):
        out = reconcile(s, pool, client_for(sim))
    assert (out.errors, out.repairs, out.grants_created, out.failed_courses) == (
        len(BAD_RECORDS("x@y")), 1, 1, [])
    assert result_status(conn, good["resultId"]) == "granted"
    assert grant_of(conn, staff[data.employees[0].email], link["competence_id"]) is None
    assert conn.execute("SELECT cursor FROM job_cursors WHERE name = 'reconcile:4711'").fetchone()
    kept = kept_bad_records(conn)
    assert len(kept) == len(BAD_RECORDS("x@y"))
    assert {k["payload"]["source"] for k in kept} == {"reconciliation"}
    assert any(f"{len(BAD_RECORDS('x@y'))} error(s)" in m for m in caplog.messages)
    # Read again by the next run (the window overlaps): counted again, kept once.
    conn.execute("DELETE FROM job_cursors")
    assert reconcile(s, pool, client_for(sim)).errors == len(BAD_RECORDS("x@y"))
    assert len(kept_bad_records(conn)) == len(BAD_RECORDS("x@y"))


def test_course_deleted_unpublished_and_published_again(conn, settings, pool, make_sim, web_url, run_worker):
    data = generate(4, courses=4, results_per_course=5, employees=5)
    sim = make_sim(data, webhook_url=f"{web_url}/webhooks/infocaption")
    s = settings_for(settings, sim)
    client = client_for(sim)

    sim.inject(500, times=2, path="/API/public/guides")
    sim.inject(429, times=1, retry_after=0, path="/API/public/guides")
    out = refresh_catalog(s, pool, client)  # survives 500, 500, 429
    assert (sim.served(500), sim.served(429)) == (2, 1)
    published = sorted(c.id for c in data.published_courses())
    assert sorted(r["id"] for r in conn.execute("SELECT id FROM courses").fetchall()) == published
    assert out.listed == len(published) and 9001 not in published  # guides never enter the catalog

    staff = add_staff(conn, data)
    email = data.employees[0].email
    a = add_link(conn, data.courses[4711], name="HLR vuxen")
    b = add_link(conn, data.courses[4712], name="Hygien")
    run_worker()
    before = sim.add_result(4711, email)  # granted while the course is published
    wait_for(lambda: result_status(conn, before["resultId"]) == "granted")

    # InfoCaption deletes one course and unpublishes another, without telling us
    sim.delete_course(4711)
    sim.unpublish_course(4712)
    out = refresh_catalog(s, pool, client)
    assert (out.deleted, out.unpublished) == ([4711], [4712])
    assert (course_status(conn, 4711), course_status(conn, 4712)) == ("deleted", "unpublished")
    assert link_row(conn, a["id"]) and link_row(conn, b["id"])  # links stay, flagged

    # results completed after that grant nothing, whatever way they come
    late = sim.add_result(4711, email, result_id="r-late-a")
    late_b = sim.add_result(4712, email, result_id="r-late-b")
    wait_for(lambda: result_status(conn, "r-late-a") == "course_not_published"
             and result_status(conn, "r-late-b") == "course_not_published", message="late results decided")
    assert grant_of(conn, staff[email], b["competence_id"]) is None
    assert grant_of(conn, staff[email], a["competence_id"])["result_id"] == before["resultId"]
    assert late["courseId"] == 4711 and late_b["courseId"] == 4712
    assert refresh_catalog(s, pool, client).deleted == []  # a deleted course is not asked again

    # published again: results from then on grant
    sim.publish_course(4712)
    out = refresh_catalog(s, pool, client)
    assert out.published == [4712] and course_status(conn, 4712) == "published"
    again = sim.add_result(4712, email)
    wait_for(lambda: result_status(conn, again["resultId"]) == "granted", message="granted again")
    assert grant_of(conn, staff[email], b["competence_id"])["result_id"] == again["resultId"]

    # deleting the link (the admin API's job; SQL here) keeps its grants
    conn.execute("DELETE FROM links WHERE id = %s", (a["id"],))
    kept = grant_of(conn, staff[email], a["competence_id"])
    assert kept is not None and kept["link_id"] == a["id"]


def test_demo_seed_relayed_by_the_scheduler_and_backfilled_by_the_worker(
        conn, settings, pool, make_sim, database_url):
    data = generate(42, courses=8, results_per_course=120, employees=60)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    with conn.transaction():
        summary = seed_demo_data(conn, seed=42, courses=8, employees=60)
    assert summary == {"employees": 60, "competences": 7, "links": 4}
    assert conn.execute("SELECT count(*) AS n FROM outbox WHERE topic = 'backfill'").fetchone()["n"] == 4
    assert conn.execute("SELECT count(*) AS n FROM audit_log WHERE actor = 'seed-demo'"
                        " AND action = 'link.create'").fetchone()["n"] == 4  # the admin API's path

    scheduler = Scheduler(s, database_url)
    worker = BackfillWorker(s, pool, page_size=50)
    thread = threading.Thread(target=worker.run, daemon=True)
    try:
        ours = ("outbox", "catalog", "reconcile")  # in this order, among the scheduler's jobs
        assert [j.name for j in scheduler.jobs if j.name in ours] == list(ours)
        scheduler.run_due()  # relays the outbox, refreshes the catalog, reconciles
        thread.start()
        wait_for(lambda: {r["backfill_state"] for r in conn.execute("SELECT backfill_state FROM links")} == {"done"},
                 timeout=60, message="every demo backfill done")
    finally:
        worker.stop()
        thread.join(timeout=30)
        scheduler.pool.close()
        scheduler.publisher.close()

    staff = {normalize_email(r["email"]): r["id"] for r in conn.execute("SELECT id, email FROM employees")}
    for link in conn.execute("SELECT l.*, c.default_valid_days FROM links l"
                             " JOIN competences c ON c.id = l.competence_id").fetchall():
        want = expected_grants(data, link["course_id"], staff, valid_days=link["default_valid_days"])
        assert periods_of(conn, link["competence_id"]) == want and want
    with conn.transaction():
        assert seed_demo_data(conn, seed=42, courses=8, employees=60) == {
            "employees": 0, "competences": 0, "links": 0, "skipped": "the database was seeded before"}

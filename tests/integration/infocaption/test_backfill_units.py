"""A backfill's pages are units that any runner takes (workers/backfill.py; docs/processes.md,
"The backfill"): two runners share one run and store every page once; the grants are decided
from the stored history in completion order, so the order in which the API serves its pages
never changes them; and through the queue, two backfill workers share a link's units."""
from __future__ import annotations

import random
import threading

import pytest

from service.demo.simulator import generate
from service.platform import messaging
from service.platform.messaging import Publisher
from tests.conftest import in_tenant, wait_for
from tests.integration.infocaption.conftest import (
    add_link, add_staff, counters, expected_counters, expected_grants, link_row, periods_of,
    settings_for)
from tests.integration.infocaption.test_backfill_read_ahead import PageHooks
from workers.backfill import Backfill, BackfillWorker
from workers.scheduler import relay_outbox

pytestmark = pytest.mark.integration

COURSE_ID = 4711


def grants(conn, competence_id: int) -> list[tuple]:
    """Every grant of the link's competence: (employee, valid_from, valid_to, evidence)."""
    return [tuple(r.values()) for r in conn.execute(
        "SELECT employee_id, valid_from, valid_to, result_id FROM grants WHERE competence_id = %s"
        " ORDER BY employee_id, valid_from", (competence_id,)).fetchall()]


def pages_asked(sim) -> list[int]:
    return [int(p.split("page=")[1].split("&")[0])
            for p in sim.requests(path=f"/API/courses/{COURSE_ID}/results")]


def assert_every_page_once(asked: list[int], pages: int) -> None:
    """No unit was stored twice. Page 1 may be read twice: the runner that began the run read
    it for the total, and another runner may have taken the first unit before it did."""
    assert sorted(set(asked)) == list(range(1, pages + 1))
    twice = sorted({p for p in asked if asked.count(p) > 1})
    assert all(asked.count(p) == 1 for p in range(2, pages + 1)) and asked.count(1) <= 2, twice


def test_two_runners_share_a_run_and_store_every_page_once(conn, settings, pool, make_sim):
    data = generate(31, courses=1, results_per_course=3000, employees=400)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    staff = add_staff(conn, data)
    link = add_link(conn, data.courses[COURSE_ID])
    b_stored = threading.Event()
    a_client, b_client = PageHooks(sim), PageHooks(sim)
    # A waits before its second page until B stored one: both take part, whatever the timing.
    a_client.before[2] = lambda: b_stored.wait(30)
    stored_by = {"a": set(), "b": set()}

    def progress(name):
        def on_progress(row):
            if name == "b" and row.get("backfill_processed"):
                b_stored.set()
        return on_progress

    rows = {}

    def runner(name, client):
        backfill = Backfill(s, pool, client, page_size=100, unit_pages=5, on_progress=progress(name))
        rows[name] = backfill.run(link["id"])
        stored_by[name] = set(client.threads)

    a = threading.Thread(target=in_tenant(runner), args=("a", a_client))
    a.start()
    wait_for(lambda: link_row(conn, link["id"])["backfill_state"] == "running", message="A began")
    b = threading.Thread(target=in_tenant(runner), args=("b", b_client))
    b.start()
    a.join(120)
    b.join(120)
    assert rows["a"]["backfill_state"] == rows["b"]["backfill_state"] == "done"
    assert_every_page_once(pages_asked(sim), 30)
    assert stored_by["a"] and stored_by["b"] and not stored_by["a"] & stored_by["b"]
    final = link_row(conn, link["id"])
    assert (final["backfill_total"], final["backfill_processed"]) == (3000, 3000)
    assert counters(final) == expected_counters(data, COURSE_ID, staff)
    assert periods_of(conn, link["competence_id"]) == expected_grants(data, COURSE_ID, staff)
    units = conn.execute("SELECT count(*) AS n, count(done_at) AS done FROM backfill_units"
                         " WHERE link_id = %s", (link["id"],)).fetchone()
    assert (units["n"], units["done"]) == (6, 6)
    parts = conn.execute("SELECT count(*) AS n, count(done_at) AS done FROM backfill_sweep_parts"
                         " WHERE link_id = %s", (link["id"],)).fetchone()
    assert (parts["n"], parts["done"]) == (4, 4)  # the grants decided in four parts by employee


def test_two_runners_that_begin_the_same_run_at_once_end_in_one_run(conn, settings, pool, make_sim):
    data = generate(34, courses=1, results_per_course=1000, employees=200)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    staff = add_staff(conn, data)
    link = add_link(conn, data.courses[COURSE_ID])
    both_read_the_total = threading.Barrier(2, timeout=30)
    rows = {}

    def runner(name):
        client = PageHooks(sim)
        client.before[1] = both_read_the_total.wait  # both see the link pending, then begin
        rows[name] = Backfill(s, pool, client, page_size=100, unit_pages=2).run(link["id"])

    threads = [threading.Thread(target=in_tenant(runner), args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a runner waits for itself"
    assert rows["a"]["backfill_state"] == rows["b"]["backfill_state"] == "done"
    assert link_row(conn, link["id"])["backfill_checkpoint"]["run"] == 1  # the second joined
    assert counters(link_row(conn, link["id"])) == expected_counters(data, COURSE_ID, staff)
    assert periods_of(conn, link["competence_id"]) == expected_grants(data, COURSE_ID, staff)


def test_the_order_of_the_api_pages_never_changes_the_grants(conn, settings, pool, make_sim):
    # 60 employees with about ten results each in one course: which pass is the evidence, and
    # from when the grant is valid, depends on deciding in completion order.
    data = generate(32, courses=1, results_per_course=900, employees=60, unmatched_share=0.05)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    staff = add_staff(conn, data)
    link = add_link(conn, data.courses[COURSE_ID])
    outcomes = []
    for shuffle in (None, 1, 2):
        if shuffle is not None:
            with sim.lock:
                random.Random(shuffle).shuffle(sim.data.results[COURSE_ID])
            conn.execute("DELETE FROM grants")
            conn.execute("DELETE FROM results")
            conn.execute("DELETE FROM backfill_units")
            conn.execute("UPDATE links SET backfill_state = 'pending', backfill_checkpoint = NULL")
        # small pages, units and sweep chunks: many units, and one employee's passes in several
        row = Backfill(s, pool, PageHooks(sim), page_size=50, unit_pages=3, sweep_chunk=37).run(link["id"])
        assert row["backfill_state"] == "done"
        outcomes.append((grants(conn, link["competence_id"]), counters(link_row(conn, link["id"]))))
    assert outcomes[1] == outcomes[0] and outcomes[2] == outcomes[0]
    assert outcomes[0][1] == expected_counters(data, COURSE_ID, staff)
    # the periods are each employee's passes in completion order through the reference model
    assert periods_of(conn, link["competence_id"]) == expected_grants(data, COURSE_ID, staff)
    assert len(outcomes[0][0]) > len(staff_with_grants(outcomes[0][0])), "some hold several periods"


def staff_with_grants(rows: list[tuple]) -> set[int]:
    return {r[0] for r in rows}


def test_two_backfill_workers_share_a_link_through_the_queue(conn, settings, pool, make_sim):
    data = generate(33, courses=1, results_per_course=3000, employees=400)
    sim = make_sim(data)
    s = settings_for(settings, sim)
    staff = add_staff(conn, data)
    link = add_link(conn, data.courses[COURSE_ID])
    publisher = Publisher(s)
    stored = [threading.Event(), threading.Event()]

    class Joined(PageHooks):
        """Before its second page, a worker waits until the other one stored a page: both take
        part in the run whichever of them took the link's message."""

        def __init__(self, me):
            super().__init__(sim)
            self.me, self.asked = me, 0

        def results_page(self, course, page=1, hits_per_page=500, changed_since=None):
            self.asked += 1
            if self.asked == 2:
                stored[1 - self.me].wait(10)
            return super().results_page(course, page, hits_per_page, changed_since)

    workers = [BackfillWorker(s, pool, page_size=100, client=Joined(i)) for i in range(2)]
    for i, w in enumerate(workers):
        w.backfill.unit_pages = 3  # ten units
        real = w._progress

        def progress(row, i=i, real=real):
            if row.get("backfill_processed"):
                stored[i].set()
            real(row)
        w.backfill.on_progress = progress
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    try:
        for t in threads:
            t.start()
        publisher.publish({"link_id": link["id"]}, kind=messaging.BACKFILL)
        # the scheduler's relay: the units' messages, written with the run, reach the queue
        wait_for(lambda: relay_outbox(pool, publisher) > 0 or conn.execute(
            "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL").fetchone()["n"] == 0
            and link_row(conn, link["id"])["backfill_state"] != "pending", timeout=60,
            message="the units' messages relayed")
        wait_for(lambda: link_row(conn, link["id"])["backfill_state"] == "done", timeout=120,
                 message="the backfill done")
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(timeout=30)
        publisher.close()
    assert all(e.is_set() for e in stored), "both workers stored pages of the link"
    assert_every_page_once(pages_asked(sim), 30)
    final = link_row(conn, link["id"])
    assert counters(final) == expected_counters(data, COURSE_ID, staff)
    assert periods_of(conn, link["competence_id"]) == expected_grants(data, COURSE_ID, staff)

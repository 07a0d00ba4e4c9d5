"""The backfill reads the next API page while the current one commits (workers/backfill.py,
PageReader): what goes wrong on a page read ahead must surface exactly where it did when pages
were read in line, after the previous page committed, and the checkpoint must stay the only
memory of a run."""
from __future__ import annotations

import threading

import pytest

from service.infocaption.client import InfoCaptionClient
from service.demo.simulator import generate
from tests.conftest import wait_for
from tests.integration.infocaption.conftest import (
    add_link, add_staff, counters, expected_counters, expected_grants, link_row, periods_of,
    resume_page,
    settings_for)
from workers.backfill import Backfill, Stopping

pytestmark = pytest.mark.integration

COURSE_ID = 4711
PAGE = 100
RESULTS = 600  # six pages


class PageHooks(InfoCaptionClient):
    """The real client; `before[n]` runs just before page n is requested (in the reading thread)."""

    def __init__(self, sim, **kwargs):
        kwargs.setdefault("backoff_first_s", 0.01)
        kwargs.setdefault("backoff_cap_s", 0.05)
        super().__init__(sim.url, sim.client_id, sim.client_secret, **kwargs)
        self.before: dict[int, callable] = {}
        self.threads: dict[int, str] = {}

    def results_page(self, course, page=1, hits_per_page=500, changed_since=None):
        self.threads[page] = threading.current_thread().name
        hook = self.before.pop(page, None)
        if hook is not None:
            hook()
        return super().results_page(course, page, hits_per_page, changed_since)


def setup(conn, settings, make_sim, seed):
    data = generate(seed, courses=1, results_per_course=RESULTS, employees=120)
    sim = make_sim(data)
    staff = add_staff(conn, data)
    link = add_link(conn, data.courses[COURSE_ID])
    return data, sim, settings_for(settings, sim), staff, link


def stored(conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM results").fetchone()["n"]


def assert_finished_exactly(conn, row, data, staff, link):
    assert row["backfill_state"] == "done"
    assert stored(conn) == RESULTS
    assert (row["backfill_total"], row["backfill_processed"]) == (RESULTS, RESULTS)
    assert counters(row) == expected_counters(data, COURSE_ID, staff)
    assert periods_of(conn, link["competence_id"]) == expected_grants(data, COURSE_ID, staff)


def test_pages_after_the_first_are_read_ahead_and_the_outcome_is_the_same(conn, settings, pool, make_sim):
    data, sim, s, staff, link = setup(conn, settings, make_sim, 21)
    client = PageHooks(sim)
    row = Backfill(s, pool, client, page_size=PAGE).run(link["id"])
    assert_finished_exactly(conn, row, data, staff, link)
    # every page once, in order, each page after the first read by the reading thread
    pages = [int(p.split("page=")[1].split("&")[0]) for p in sim.requests(path=f"/API/courses/{COURSE_ID}/results")]
    assert pages == [1, 2, 3, 4, 5, 6]
    main = threading.current_thread().name
    assert all(client.threads[n] != main for n in range(2, 7))


def test_an_unavailable_infocaption_on_a_page_read_ahead_fails_after_the_previous_page_committed(
        conn, settings, pool, make_sim):
    data, sim, s, staff, link = setup(conn, settings, make_sim, 22)
    client = PageHooks(sim, max_attempts=3)
    client.before[4] = lambda: sim.inject(500, times=3, path="/API/courses/")
    row = Backfill(s, pool, client, page_size=PAGE).run(link["id"])
    # pages 1-3 committed, page 4 failed: the checkpoint points to it, the reason is on the link
    assert row["backfill_state"] == "failed" and "InfoCaption" in row["backfill_error"]
    assert resume_page(conn, link["id"]) == 4
    assert row["backfill_processed"] == 3 * PAGE and stored(conn) == 3 * PAGE

    # the next run resumes at page 4 and ends as if nothing had happened
    asked = len(sim.requests(path=f"/API/courses/{COURSE_ID}/results"))
    row = Backfill(s, pool, PageHooks(sim), page_size=PAGE).run(link["id"])
    resumed = [int(p.split("page=")[1].split("&")[0])
               for p in sim.requests(path=f"/API/courses/{COURSE_ID}/results")[asked:]]
    assert resumed == [4, 5, 6]
    assert_finished_exactly(conn, row, data, staff, link)


def test_a_course_deleted_under_a_page_read_ahead_fails_the_backfill_and_flags_the_course(
        conn, settings, pool, make_sim):
    data, sim, s, staff, link = setup(conn, settings, make_sim, 23)
    client = PageHooks(sim)
    client.before[3] = lambda: sim.delete_course(COURSE_ID)
    row = Backfill(s, pool, client, page_size=PAGE).run(link["id"])
    assert row["backfill_state"] == "failed" and "404" in row["backfill_error"]
    assert conn.execute("SELECT status FROM courses WHERE id = %s", (COURSE_ID,)).fetchone()["status"] == "deleted"
    # the two pages committed before stay, and are what the counters count
    assert stored(conn) == 2 * PAGE
    assert row["backfill_processed"] == row["backfill_total"] == 2 * PAGE
    assert sum(counters(row).values()) == 2 * PAGE


def test_stopping_while_a_page_is_read_ahead_leaves_the_checkpoint_on_it_and_resumes_there(
        conn, settings, pool, make_sim):
    data, sim, s, staff, link = setup(conn, settings, make_sim, 24)

    def pause(_seconds):  # the worker's pause once it is stopping
        raise Stopping()

    client = PageHooks(sim, sleep=pause)
    client.before[5] = lambda: sim.inject(503, times=1, path="/API/courses/")  # a retry: a pause
    with pytest.raises(Stopping):
        Backfill(s, pool, client, page_size=PAGE, pause=pause).run(link["id"])
    stopped = link_row(conn, link["id"])
    assert stopped["backfill_state"] == "running"
    assert resume_page(conn, link["id"]) == 5
    assert stopped["backfill_processed"] == 4 * PAGE and stored(conn) == 4 * PAGE

    before = {r["id"]: r["updated_at"] for r in conn.execute("SELECT id, updated_at FROM results").fetchall()}
    row = Backfill(s, pool, PageHooks(sim), page_size=PAGE).run(link["id"])
    assert_finished_exactly(conn, row, data, staff, link)
    # the pages committed before the stop were not written again
    after = {r["id"]: r["updated_at"] for r in conn.execute("SELECT id, updated_at FROM results").fetchall()}
    assert all(after[i] == t for i, t in before.items())


def test_a_commit_that_fails_drops_the_page_read_ahead_and_the_next_run_reads_it_again(
        conn, settings, pool, make_sim):
    data, sim, s, staff, link = setup(conn, settings, make_sim, 25)
    backfill = Backfill(s, pool, PageHooks(sim), page_size=PAGE)
    committed = []

    def on_progress(row):
        committed.append(row["backfill_processed"])
        if row["backfill_processed"] == 2 * PAGE:
            raise RuntimeError("the process dies after page 2 committed")

    backfill.on_progress = on_progress
    with pytest.raises(RuntimeError):
        backfill.run(link["id"])
    # Page 3 was in flight beside page 2 and ends as it would have: committed or not, with the
    # checkpoint saying which. The page after it was read ahead and is not kept.
    resume_at = resume_page(conn, link["id"])
    assert resume_at in (3, 4)
    assert link_row(conn, link["id"])["backfill_processed"] == (resume_at - 1) * PAGE == stored(conn)
    # the page read ahead is answered (it may still have been in flight when the run failed)
    wait_for(lambda: any(f"page={resume_at}&" in p
                         for p in sim.requests(path=f"/API/courses/{COURSE_ID}/results")),
             message=f"page {resume_at} read ahead")
    asked = len(sim.requests(path=f"/API/courses/{COURSE_ID}/results"))
    row = Backfill(s, pool, PageHooks(sim), page_size=PAGE).run(link["id"])
    resumed = [int(p.split("page=")[1].split("&")[0])
               for p in sim.requests(path=f"/API/courses/{COURSE_ID}/results")[asked:]]
    # the page read ahead by the first run is read again
    assert resumed == list(range(resume_at, 7))
    assert_finished_exactly(conn, row, data, staff, link)


def test_a_page_whose_scores_mix_whole_and_decimal_numbers_is_stored_as_given(conn, settings, pool, make_sim):
    data, sim, s, staff, link = setup(conn, settings, make_sim, 26)
    # InfoCaption's JSON gives 92 and 87.5 alike: one page holds both kinds of number
    sim.add_result(COURSE_ID, "extern.a@partner.example", score=87.5, result_id="r-decimal", send_webhook=False)
    sim.add_result(COURSE_ID, "extern.b@partner.example", score=92, result_id="r-whole", send_webhook=False)
    row = Backfill(s, pool, PageHooks(sim), page_size=1000).run(link["id"])
    assert row["backfill_state"] == "done" and row["backfill_processed"] == RESULTS + 2
    scores = {r["id"]: r["score"] for r in conn.execute(
        "SELECT id, score::text AS score FROM results WHERE id IN ('r-decimal', 'r-whole')").fetchall()}
    assert scores == {"r-decimal": "87.5", "r-whole": "92"}

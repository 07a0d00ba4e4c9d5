"""The backfill commits two pages at once, in order (workers/backfill.py, Backfill._commit_pages):
page n+1 is stored while page n is, but moves the checkpoint only after page n committed; pages
that share an employee are stored one after the other; and should two pages still wait for each
other's rows, the run goes on one page at a time with nothing lost."""
from __future__ import annotations

import logging
import threading

import pytest

import workers.backfill as backfill_module
from service.grants import pipeline
from service.demo.simulator import generate
from tests.integration.infocaption.conftest import add_link, classify, link_row, settings_for
from tests.integration.infocaption.test_backfill_read_ahead import (
    COURSE_ID, PAGE, RESULTS, PageHooks, assert_finished_exactly, setup, stored)
from workers.backfill import Backfill

pytestmark = pytest.mark.integration

FALLBACK = "one page at a time"


class PageGate:
    """Wraps apply_results: events when the first two pages start and end storing their results,
    and a hook that runs in the first page's transaction (before or after its results)."""

    def __init__(self, monkeypatch, first_ids: tuple[str, str]):
        self.first_ids = first_ids  # the first result id of page 1 and of page 2
        self.started = {1: threading.Event(), 2: threading.Event()}
        self.stored = {1: threading.Event(), 2: threading.Event()}
        self.before_page_1 = lambda: None
        self.after_page_1 = lambda: None
        self.seen: set[int] = set()
        real = pipeline.apply_results

        def gated(conn, records, **kwargs):
            number = {self.first_ids[0]: 1, self.first_ids[1]: 2}.get(records[0].id) if records else None
            first_time = number is not None and number not in self.seen
            if first_time:
                self.seen.add(number)
                self.started[number].set()
                if number == 1:
                    self.before_page_1()
            out = real(conn, records, **kwargs)
            if first_time:
                self.stored[number].set()
                if number == 1:
                    self.after_page_1()
            return out

        monkeypatch.setattr(pipeline, "apply_results", gated)


def first_ids(sim) -> tuple[str, str]:
    client = PageHooks(sim)
    course = {"id": COURSE_ID, "name": "", "guide_type": 14}
    return tuple(client.results_page(course, n, PAGE).items[0].id for n in (1, 2))


def test_the_next_page_is_stored_while_one_is_and_commits_after_it(
        conn, settings, pool, make_sim, monkeypatch, caplog):
    # Nobody is on the staff: every result stays unmatched, so the pages lock no common row
    # and, told that they share nothing, go side by side.
    data = generate(31, courses=1, results_per_course=RESULTS, employees=120)
    sim = make_sim(data)
    link = add_link(conn, data.courses[COURSE_ID])
    monkeypatch.setattr(backfill_module, "_rows_touched", lambda page: {("page", id(page))})
    gate = PageGate(monkeypatch, first_ids(sim))
    seen_beside = []

    def after_page_1():
        # Page 1's transaction is open: page 2 is stored meanwhile, then waits for its turn;
        # if it did not wait, it would find page 1's checkpoint and fail the run.
        seen_beside.append(gate.stored[2].wait(10))

    gate.after_page_1 = after_page_1
    with caplog.at_level(logging.INFO, logger="workers.backfill"):
        row = Backfill(settings_for(settings, sim), pool, PageHooks(sim), page_size=PAGE).run(link["id"])
    assert seen_beside == [True]
    assert row["backfill_state"] == "done"
    assert (row["backfill_processed"], row["backfill_unmatched"]) == (
        RESULTS, classify(data, COURSE_ID, {})["unmatched"])
    assert stored(conn) == RESULTS
    assert FALLBACK not in caplog.text


def test_pages_that_share_an_employee_are_stored_one_after_the_other(
        conn, settings, pool, make_sim, monkeypatch, caplog):
    data, sim, s, staff, link = setup(conn, settings, make_sim, 32)  # 120 staff, 100 a page
    gate = PageGate(monkeypatch, first_ids(sim))
    beside = []
    # Page 1 gives page 2 two seconds to start storing: it must not, as they share staff.
    gate.before_page_1 = lambda: beside.append(gate.started[2].wait(2))
    with caplog.at_level(logging.INFO, logger="workers.backfill"):
        row = Backfill(s, pool, PageHooks(sim), page_size=PAGE).run(link["id"])
    assert beside == [False]
    assert_finished_exactly(conn, row, data, staff, link)
    assert FALLBACK not in caplog.text  # no deadlock


def test_two_pages_waiting_for_each_other_go_on_one_page_at_a_time(
        conn, settings, pool, make_sim, monkeypatch, caplog):
    data, sim, s, staff, link = setup(conn, settings, make_sim, 33)
    # Pretend the pages share nothing, so that they go side by side, and let page 2 grant
    # first: page 1 then waits for page 2's grants while page 2 waits for page 1's turn.
    monkeypatch.setattr(backfill_module, "_rows_touched", lambda page: {("page", id(page))})
    gate = PageGate(monkeypatch, first_ids(sim))
    gate.before_page_1 = lambda: gate.stored[2].wait(10)
    with caplog.at_level(logging.INFO, logger="workers.backfill"):
        row = Backfill(s, pool, PageHooks(sim), page_size=PAGE).run(link["id"])
    assert FALLBACK in caplog.text
    assert_finished_exactly(conn, row, data, staff, link)
    assert link_row(conn, link["id"])["backfill_checkpoint"]["grants_created"] == len(
        conn.execute("SELECT id FROM grants WHERE competence_id = %s", (link["competence_id"],)).fetchall())

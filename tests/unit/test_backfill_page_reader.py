"""PageReader (workers/backfill.py): a page read ahead is handed over, or its error raised, in
the caller's thread when the caller asks for it; never earlier, never twice."""
from __future__ import annotations

import threading

import pytest

from service.infocaption.client import CourseGone, InfoCaptionUnavailable
from workers.backfill import PageReader, Stopping


class Pages:
    """A fake fetch: page n is `("page", n)`; `fail[n]` is raised instead; calls are recorded."""

    def __init__(self):
        self.calls: list[tuple[int, str]] = []
        self.fail: dict[int, BaseException] = {}
        self.gate: dict[int, threading.Event] = {}

    def __call__(self, n):
        self.calls.append((n, threading.current_thread().name))
        if n in self.gate:
            self.gate[n].wait(5)
        if n in self.fail:
            raise self.fail[n]
        return ("page", n)


def test_a_page_read_ahead_is_fetched_in_another_thread_and_handed_over_once():
    pages = Pages()
    reader = PageReader(pages, pause=lambda _s: None)
    assert reader.get(1) == ("page", 1)
    reader.read_ahead(2)
    reader.read_ahead(3)  # one page ahead at most: ignored while page 2 is pending
    assert reader.get(2) == ("page", 2)
    assert reader.get(3) == ("page", 3)  # not read ahead: fetched now
    assert [n for n, _ in pages.calls] == [1, 2, 3]
    assert all(name != threading.current_thread().name for _, name in pages.calls)
    reader.close()


@pytest.mark.parametrize("error", [CourseGone(4711), InfoCaptionUnavailable("503 8 times"), Stopping()])
def test_the_error_of_a_page_read_ahead_is_raised_when_that_page_is_asked_for(error):
    pages = Pages()
    pages.fail[2] = error
    reader = PageReader(pages, pause=lambda _s: None)
    reader.get(1)
    reader.read_ahead(2)  # fails in the background: nothing raised here
    with pytest.raises(type(error)) as raised:
        reader.get(2)
    assert raised.value is error


def test_a_page_read_ahead_that_is_not_the_one_asked_for_is_dropped():
    pages = Pages()
    pages.fail[7] = InfoCaptionUnavailable("not ours")
    reader = PageReader(pages, pause=lambda _s: None)
    reader.read_ahead(7)
    assert reader.get(1) == ("page", 1)  # the failed page 7 is not needed: its error is not raised
    assert [n for n, _ in pages.calls] == [7, 1]  # and page 1 was asked for after it ended


def test_a_slow_page_runs_the_pause_callback_while_waiting_which_may_stop_the_run():
    pages = Pages()
    pages.gate[2] = threading.Event()
    paused = []

    def pause(seconds):
        paused.append(seconds)
        raise Stopping()

    reader = PageReader(pages, pause=pause)
    reader.WAIT_SLICE_S = 0.05
    reader.read_ahead(2)
    with pytest.raises(Stopping):
        reader.get(2)
    assert paused
    pages.gate[2].set()
    reader.close()

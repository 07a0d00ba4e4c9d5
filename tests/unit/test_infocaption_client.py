"""The InfoCaption client's paging, token, retry and parsing rules, against the in-process
simulator (HTTP on 127.0.0.1; no database, no broker)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from service.infocaption.client import (
    CourseGone, InfoCaptionClient, InfoCaptionRefused, InfoCaptionUnavailable)
from service.demo.simulator import Simulator, generate
from service.platform.metrics import INFOCAPTION_BAD_RECORDS

COURSE = {"id": 4711, "name": "HLR vuxen", "guide_type": 14}


@pytest.fixture
def sim():
    s = Simulator(generate(3, courses=5, results_per_course=230, employees=40)).start()
    yield s
    s.stop()


def make_client(sim, **kwargs):
    slept: list[float] = []
    kwargs.setdefault("backoff_first_s", 0.5)
    kwargs.setdefault("backoff_cap_s", 4.0)
    client = InfoCaptionClient(sim.url, sim.client_id, sim.client_secret, sleep=slept.append, **kwargs)
    return client, slept


def test_pages_start_at_1_and_cover_every_result_once(sim):
    client, _ = make_client(sim)
    pages = list(client.result_pages(COURSE, hits_per_page=100))
    assert [p.current_page for p in pages] == [1, 2, 3]
    assert [len(p.items) for p in pages] == [100, 100, 30]
    assert pages[-1].last and not pages[0].last and pages[0].total_hits == 230
    ids = [r.id for p in pages for r in p.items]
    assert len(ids) == len(set(ids)) == 230
    assert sim.requests(path="/API/courses/4711/results")[0] == "/API/courses/4711/results?page=1&hitsPerPage=100"
    record = pages[0].items[0]
    assert record.completed_at.tzinfo is not None and record.course_id == 4711
    assert record.course_name == "HLR vuxen" and record.guide_type == 14


def test_catalog_lists_only_published_courses(sim):
    client, _ = make_client(sim)
    sim.unpublish_course(4712)
    ids = sorted(c.id for c in client.published_courses(hits_per_page=2))
    assert ids == sorted(c.id for c in sim.data.published_courses())
    assert 4712 not in ids and 9001 not in ids  # unpublished courses and guides are not listed
    assert all(p.startswith("/API/public/guides?type[]=14&type[]=18&page=") for p in sim.requests(path="/API/public"))


def test_changed_since_reads_only_recent_changes(sim):
    client, _ = make_client(sim)
    added = sim.add_result(4711, "ny@kommun.example", send_webhook=False)
    page = client.results_page(COURSE, changed_since=datetime.now(timezone.utc) - timedelta(minutes=1))
    assert [r.id for r in page.items] == [added["resultId"]]
    assert "changedSince=" in sim.requests(path="/API/courses/")[-1]


def test_token_is_cached_and_renewed_on_401(sim):
    client, _ = make_client(sim)
    for page in (1, 2, 3):
        client.results_page(COURSE, page, 10)
    assert sim.served(200, "/oauth2/token") == 1
    sim.expire_tokens()
    assert len(client.results_page(COURSE, 4, 10).items) == 10
    assert (sim.served(401), sim.served(200, "/oauth2/token")) == (1, 2)


def test_token_is_renewed_before_it_expires():
    sim = Simulator(generate(3, courses=1, results_per_course=5, employees=5), token_ttl=1).start()
    try:
        client, _ = make_client(sim)
        client.results_page(COURSE)
        client._token_expires = 0  # as if its lifetime had passed
        client.results_page(COURSE)
        assert sim.served(200, "/oauth2/token") == 2 and sim.served(401) == 0
    finally:
        sim.stop()


def test_wrong_credentials_are_refused_without_retrying(sim):
    client = InfoCaptionClient(sim.url, sim.client_id, "wrong", sleep=lambda s: None)
    with pytest.raises(InfoCaptionRefused):
        client.results_page(COURSE)
    assert sim.served(path="/oauth2/token") == 1


def test_429_waits_for_retry_after_in_seconds_or_as_a_date(sim):
    client, slept = make_client(sim, retry_after_cap_s=60)
    sim.inject(429, times=1, retry_after=7)
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    sim.inject(429, times=1, retry_after=when)
    sim.inject(429, times=1, retry_after=3600)  # capped
    assert len(client.results_page(COURSE, 1, 10).items) == 10
    assert slept[0] == 7
    assert 25 <= slept[1] <= 30
    assert slept[2] == 60


def test_5xx_and_timeouts_are_retried_with_capped_backoff(sim):
    client, slept = make_client(sim, timeout=0.3, max_attempts=8)
    sim.inject(500, times=2)
    sim.inject(503, times=2)
    sim.inject_delay(1.0, times=1)  # the client times out
    sim.inject(502, times=1)
    assert len(client.results_page(COURSE, 1, 10).items) == 10
    assert len(slept) == 6
    assert all(d <= 4.0 for d in slept)
    assert slept[5] >= 2.0  # 0.5 * 2**5 capped at 4, halved at most by jitter


def test_gives_up_after_max_attempts(sim):
    client, slept = make_client(sim, max_attempts=3)
    sim.inject(500, times=10)
    with pytest.raises(InfoCaptionUnavailable):
        client.results_page(COURSE)
    assert sim.served(500) == 3 and len(slept) == 2


def test_404_on_a_course_means_it_was_deleted(sim):
    client, _ = make_client(sim)
    assert client.course_exists(4711)
    sim.delete_course(4711)
    with pytest.raises(CourseGone) as err:
        client.results_page(COURSE)
    assert err.value.course_id == 4711
    assert not client.course_exists(4711)


def test_a_bad_record_is_skipped_counted_and_logged_masked(sim, caplog):
    client, _ = make_client(sim)
    sim.add_bad_record(4711, {"resultId": "bad-1", "user": {"email": "anna.svensson@kommun.example"},
                              "passed": True, "completedAt": "2026-11-29T12:00:00"})
    sim.add_bad_record(4711, {"resultId": 17, "user": {"email": "x@kommun.example"},
                              "passed": True, "score": "high", "completedAt": "2026-11-29T12:00:00Z"})
    sim.add_bad_record(4711, ["not", "an", "object"])
    before = INFOCAPTION_BAD_RECORDS._value.get()
    pages = list(client.result_pages(COURSE, hits_per_page=1000))
    assert sum(p.skipped for p in pages) == 3
    assert sum(len(p.items) for p in pages) == 230
    assert INFOCAPTION_BAD_RECORDS._value.get() - before == 3
    assert "anna.svensson" not in caplog.text and "a***@kommun.example" in caplog.text
    assert "no UTC offset" in caplog.text and "score is not a number" in caplog.text

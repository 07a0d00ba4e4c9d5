"""Reading one result record of InfoCaption's API (service/infocaption/client.py, _parse_result):
what cannot be read is left out with its reason, never raised."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from service.infocaption.client import _parse_result

COURSE = {"id": 4711, "name": "HLR vuxen", "guide_type": 14}


def raw(**changes) -> dict:
    base = {"resultId": "r-1", "user": {"email": "anna@kommun.se", "firstName": "Anna"},
            "passed": True, "score": 90, "completedAt": "2026-11-29T12:00:00+01:00",
            "changedAt": "2026-11-29T11:05:00Z"}
    return {k: v for k, v in dict(base, **changes).items() if v is not None}


def test_a_good_record_is_read():
    rejected: list = []
    rec = _parse_result(raw(), COURSE, rejected)
    assert rec is not None and rec.id == "r-1" and rejected == []
    assert rec.completed_at == datetime(2026, 11, 29, 11, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("changes, why", [
    ({"user": {"email": "anna@kommun.se", "firstName": "\ud800"}}, "not valid Unicode"),
    ({"user": {"email": "anna@kommun.se", "lastName": "A\udfffB"}}, "not valid Unicode"),
    ({"resultId": "r-\ud83d"}, "not valid Unicode"),
    ({"completedAt": "9999-12-31T23:59:59+00:00"}, "before 2000-01-01 or more than a day"),
    ({"completedAt": "9999-12-31T23:59:59-14:00"}, "before 2000-01-01 or more than a day"),
    ({"completedAt": "0001-01-01T00:00:00+14:00"}, "before 2000-01-01 or more than a day"),
    ({"completedAt": "1999-12-31T23:59:59Z"}, "before 2000-01-01 or more than a day"),
    ({"changedAt": "0001-01-01T00:00:00Z"}, "changedAt is before 2000-01-01"),
    ({"completedAt": None}, "completedAt is missing"),
    ({"passed": None}, "passed is not a boolean"),
])
def test_an_unreadable_record_is_left_out_with_its_reason(changes, why):
    rejected: list = []
    record = raw(**changes)
    assert _parse_result(record, COURSE, rejected) is None
    assert len(rejected) == 1 and rejected[0][0] is record and why in rejected[0][1]


def test_the_bounds_are_those_of_the_webhook_edge():
    now = datetime.now(timezone.utc)
    assert _parse_result(raw(completedAt="2000-01-01T00:00:00Z"), COURSE) is not None
    soon = (now + timedelta(hours=23)).isoformat()
    assert _parse_result(raw(completedAt=soon, changedAt=soon), COURSE) is not None
    later = (now + timedelta(hours=25)).isoformat()
    assert _parse_result(raw(completedAt=later), COURSE) is None

"""The rules one by one, with no I/O."""
from __future__ import annotations

import unicodedata
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from service.domain.rules import is_course, normalize_email, valid_from, valid_to

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def test_emails_compare_trimmed_case_insensitive_and_nfc():
    decomposed = unicodedata.normalize("NFD", "Åsa.Öberg@Kommun.se")
    assert decomposed != "Åsa.Öberg@Kommun.se"
    assert normalize_email(f"  {decomposed}\t") == normalize_email("åsa.öberg@kommun.se")
    assert normalize_email("ANNA@KOMMUN.SE") == "anna@kommun.se"
    assert normalize_email("anna@kommun.se") != normalize_email("anna2@kommun.se")


@pytest.mark.parametrize("guide_type, expected", [(14, True), (18, True), (1, False), (2, False), (5, False), (0, False)])
def test_only_kurs_and_fysisk_kurs_are_courses(guide_type, expected):
    assert is_course(guide_type) is expected


@pytest.mark.parametrize(
    "completed, expected",
    [
        ("2026-11-29T23:30:00+00:00", date(2026, 11, 30)),  # the CONTRACT's example
        ("2026-11-29T22:59:59+00:00", date(2026, 11, 29)),
        ("2026-11-29T12:00:00+01:00", date(2026, 11, 29)),
        ("2026-07-14T22:30:00+00:00", date(2026, 7, 15)),  # summer time: UTC+2
        ("2026-07-14T21:59:00+00:00", date(2026, 7, 14)),
        ("2026-03-29T00:30:00+00:00", date(2026, 3, 29)),  # the night summer time starts
    ],
)
def test_valid_from_is_the_completion_date_in_the_organisations_time_zone(completed, expected):
    assert valid_from(datetime.fromisoformat(completed), STOCKHOLM) == expected


def test_valid_from_refuses_a_time_without_offset():
    with pytest.raises(ValueError):
        valid_from(datetime(2026, 11, 29, 12, 0), STOCKHOLM)


def test_valid_to_adds_default_days_or_never_expires():
    assert valid_to(date(2026, 11, 30), 730) == date(2028, 11, 29)
    assert valid_to(date(2026, 11, 30), 1) == date(2026, 12, 1)
    assert valid_to(date(2026, 11, 30), None) is None


def test_another_time_zone_moves_the_date():
    utc_late = datetime(2026, 11, 29, 23, 30, tzinfo=timezone.utc)
    assert valid_from(utc_late, ZoneInfo("UTC")) == date(2026, 11, 29)
    assert valid_from(utc_late, STOCKHOLM) == date(2026, 11, 30)

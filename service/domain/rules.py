"""Pure rules: email matching, validity dates, which guides are courses."""
from __future__ import annotations

import unicodedata
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

COURSE_GUIDE_TYPES = frozenset({14, 18})  # 14 Kurs, 18 FysiskKurs; everything else is a guide
COURSE_STATUSES = ("published", "unpublished", "deleted")


def normalize_email(email: str) -> str:
    """Return the form emails are compared in: NFC, trimmed, case-folded (CONTRACT rule 2)."""
    return unicodedata.normalize("NFC", email).strip().casefold()


def is_course(guide_type: int) -> bool:
    """Tell whether a guide type is a course that may be linked."""
    return guide_type in COURSE_GUIDE_TYPES


def valid_from(completed_at: datetime, tz: ZoneInfo) -> date:
    """Return the completion date in the organisation's time zone."""
    if completed_at.tzinfo is None:
        raise ValueError("completed_at must carry a UTC offset")
    return completed_at.astimezone(tz).date()


def valid_to(start: date, default_valid_days: int | None) -> date | None:
    """Return the last day of validity, or None when the competence never expires."""
    if default_valid_days is None:
        return None
    return start + timedelta(days=default_valid_days)

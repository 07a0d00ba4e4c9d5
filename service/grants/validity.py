"""A grant's validity: from the completion date in the organisation's time zone, for the
competence's default validity."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


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

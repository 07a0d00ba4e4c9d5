"""The event the web process queues and the result worker applies: made and read here only.

A queued event is JSON (the queue carries JSON): `type`, `timestamp` (when InfoCaption says it
happened), `webhook_id`, `received_at`, `tenant` (its id), `course` {id, name, guide_type} and, for a result,
`result` {id, email, first_name, last_name, passed, score, completed_at}. Times are ISO-8601
text with an offset. `result_event` and `course_event` make one; the pipeline reads them with
the accessors below (docs/webhooks.md, "What is queued").
"""
from __future__ import annotations

from datetime import datetime

RESULT_EVENT = "course.completed"
STATUS_EVENTS = {  # the course status each status event sets
    "course.published": "published",
    "course.unpublished": "unpublished",
    "course.deleted": "deleted",
}


def course(id: int, name: str, guide_type: int) -> dict:
    return {"id": id, "name": name, "guide_type": guide_type}


def result_event(*, timestamp: datetime, course: dict, result_id: str, email: str,
                 first_name: str | None, last_name: str | None, passed: bool,
                 score: float | None, completed_at: datetime) -> dict:
    """A course.completed event as it is queued (without its webhook id and arrival yet)."""
    return {
        "type": RESULT_EVENT,
        "timestamp": timestamp.isoformat(),
        "course": course,
        "result": {"id": result_id, "email": email, "first_name": first_name,
                   "last_name": last_name, "passed": passed, "score": score,
                   "completed_at": completed_at.isoformat()},
    }


def course_event(kind: str, *, timestamp: datetime, course: dict) -> dict:
    """A course.published / unpublished / deleted event as it is queued."""
    if kind not in STATUS_EVENTS:
        raise ValueError(f"not a course status event: {kind}")
    return {"type": kind, "timestamp": timestamp.isoformat(), "course": course}


def received(event: dict, *, webhook_id: str, received_at: datetime, tenant: int) -> dict:
    """The event with the webhook id it came with, when the web process took it, and the
    tenant whose URL it came to (docs/tenants.md)."""
    return dict(event, webhook_id=webhook_id, received_at=received_at.isoformat(), tenant=tenant)


def happened_at(event: dict) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


def completed_at(event: dict) -> datetime:
    return datetime.fromisoformat(event["result"]["completed_at"])

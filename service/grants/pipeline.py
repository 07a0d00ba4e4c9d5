"""The result pipeline: record results, grant linked competences (docs/rules.md, rules 1-3, 5, 6).

Every function takes an open connection; the caller owns the transaction. Statements are
set-based: a batch of any size costs the same handful of round trips.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from service.ingest import message
from service.ingest.message import RESULT_EVENT, STATUS_EVENTS
from service.platform import db
from service.people.email import normalize_email

log = logging.getLogger(__name__)



# What one stored result did (Outcome.statuses): the words of logs, metrics and counters.
OUTCOMES = ("granted", "already_held", "not_passed", "unmatched", "course_not_published", "no_link")


@dataclass
class Outcome:
    """What a batch did: counts for metrics, logs and backfill progress.

    `statuses` maps each result decided by the batch to its outcome (one of OUTCOMES):
    `granted` when it created at least one grant (it is the grant's evidence), `already_held`
    when it earns the competence but created nothing (a period held covers it, a revocation
    bars it, or an earlier result of the batch started the period: rules 3 and 5), `not_passed`,
    `unmatched`, `course_not_published` (rule 6), `no_link`. `granted_competences` names,
    per result, the competences it granted (a backfill counts its own link's only).
    `grants_created` counts every new grant (a period); `grants_renewed` the part of them that
    follow an earlier period of the same employee and competence (rule 3: grants are never
    extended in place).
    """

    duplicates: int = 0
    results: int = 0
    unchanged: int = 0
    grants_created: int = 0
    grants_renewed: int = 0
    status_changes: int = 0
    statuses: dict[str, str] = field(default_factory=dict)  # result id -> outcome
    granted_competences: dict[str, set[int]] = field(default_factory=dict)

    def add(self, other: "Outcome") -> None:
        self.duplicates += other.duplicates
        self.results += other.results
        self.unchanged += other.unchanged
        self.grants_created += other.grants_created
        self.grants_renewed += other.grants_renewed
        self.status_changes += other.status_changes
        self.statuses.update(other.statuses)
        for rid, competences in other.granted_competences.items():
            self.granted_competences.setdefault(rid, set()).update(competences)

    def _count(self, rows) -> None:
        """Take the rows of upsert_results or evaluate_results: outcomes and grants."""
        for row in rows:
            if row["id"] is not None:
                self.statuses[row["id"]] = row["outcome"]
                continue
            self.grants_created += 1
            if row["renewed"]:
                self.grants_renewed += 1
            self.granted_competences.setdefault(row["result_id"], set()).add(row["competence_id"])


@dataclass(frozen=True)
class ResultRecord:
    """One result as InfoCaption reported it (by webhook or by the API)."""

    id: str
    course_id: int
    course_name: str
    guide_type: int
    email: str
    first_name: str | None
    last_name: str | None
    passed: bool
    score: float | None
    completed_at: datetime
    changed_at: datetime | None = None
    webhook_id: str | None = None

    @classmethod
    def from_event(cls, event: dict) -> "ResultRecord":
        result, course = event["result"], event["course"]
        return cls(
            id=result["id"],
            course_id=course["id"],
            course_name=course["name"],
            guide_type=course["guide_type"],
            email=result["email"],
            first_name=result.get("first_name"),
            last_name=result.get("last_name"),
            passed=result["passed"],
            score=result.get("score"),
            completed_at=message.completed_at(event),
            changed_at=message.happened_at(event),
            webhook_id=event.get("webhook_id"),
        )


def claim_webhooks(conn: psycopg.Connection, events: list[dict]) -> list[dict]:
    """Drop events whose webhook id was processed before (or earlier in this batch)."""
    first: dict[str, dict] = {}
    for event in events:
        first.setdefault(event["webhook_id"], event)
    if not first:
        return []
    ids = sorted(first)
    rows = conn.execute(
        db.q("claim_webhooks"),
        {"webhook_ids": ids, "types": [first[i]["type"] for i in ids]},
    ).fetchall()
    return [first[row["webhook_id"]] for row in rows]


def _latest(records: list[ResultRecord]) -> list[ResultRecord]:
    """The latest version of each result, in a fixed order (concurrent batches then lock rows
    in the same order: fewer deadlocks)."""
    latest: dict[str, ResultRecord] = {}
    for rec in records:
        seen = latest.get(rec.id)
        if seen is None or (rec.changed_at or datetime.min) >= (seen.changed_at or datetime.min):
            latest[rec.id] = rec
    return sorted(latest.values(), key=lambda r: r.id)


def _store(conn: psycopg.Connection, query: str, recs: list[ResultRecord], *, source: str,
           tz: str) -> list:
    """Run a statement of the store_incoming family on these results (their courses first)."""
    courses: dict[int, ResultRecord] = {}
    for r in recs:
        courses.setdefault(r.course_id, r)  # a page of a backfill is 500 results of one course
    conn.execute(
        db.q("upsert_courses_seen"),
        {
            "ids": list(courses),
            "names": [r.course_name for r in courses.values()],
            "guide_types": [r.guide_type for r in courses.values()],
        },
    )
    return conn.execute(
        db.q(query),
        {
            "ids": [r.id for r in recs],
            "course_ids": [r.course_id for r in recs],
            "emails": [r.email for r in recs],
            "emails_normalized": [normalize_email(r.email) for r in recs],
            "first_names": [r.first_name for r in recs],
            "last_names": [r.last_name for r in recs],
            "passed": [r.passed for r in recs],
            # One type for the whole array: the API gives 92 and 87.5 alike, and a list that
            # mixes int and float cannot be sent. Same stored values (92.0 is sent as 92).
            "scores": [None if r.score is None else float(r.score) for r in recs],
            "completed_at": [r.completed_at for r in recs],
            "changed_at": [r.changed_at for r in recs],
            "webhook_ids": [r.webhook_id for r in recs],
            "sources": [source] * len(recs),
            "source": source,
            "tz": tz,
        },
        prepare=False,  # planned for these values: see evaluate_results
    ).fetchall()


def record_results(conn: psycopg.Connection, records: list[ResultRecord], *, source: str,
                   tz: str) -> Outcome:
    """Store results (new, or changed and not older) and grant what they earn, in one statement.

    The outcome's statuses are those of the stored ones (new or changed); the others changed
    nothing.
    """
    out = Outcome()
    recs = _latest(records)
    if recs:
        out._count(_store(conn, "upsert_results", recs, source=source, tz=tz))
    return out


def store_results(conn: psycopg.Connection, records: list[ResultRecord], *, source: str,
                  tz: str) -> Outcome:
    """Store results decided, without granting; the statuses cover every given result.

    A backfill stores its pages so and grants afterwards (grant_stored_results), from the
    whole history in completion order. The statuses are result statuses (failed,
    course_not_published, unmatched, no_link, granted: docs/rules.md, "The status of a result").
    """
    out = Outcome()
    recs = _latest(records)
    if recs:
        for row in _store(conn, "store_results", recs, source=source, tz=tz):
            out.statuses[row["id"]] = row["status"]
    out.results = len(records)
    return out


def classify_results(conn: psycopg.Connection, result_ids: list[str]) -> int:
    """Decide stored results again without granting; return how many changed."""
    if not result_ids:
        return 0
    return conn.execute(db.q("classify_results"), {"ids": result_ids}).fetchone()["changed"]


@dataclass
class GrantChunk:
    """What one chunk of grant_stored_results did, and where the next one starts."""

    size: int = 0  # results read (of every part)
    after: tuple[datetime, str] | None = None
    grants_created: int = 0
    granted_competences: dict[str, set[int]] = field(default_factory=dict)


def grant_stored_results(conn: psycopg.Connection, course_id: int, after: tuple[datetime, str],
                         *, limit: int, source: str, tz: str, part: int = 0,
                         parts: int = 1) -> GrantChunk:
    """Read the course's next `limit` stored results that grant, in completion order, and
    grant what those of the employees whose id modulo `parts` is `part` earn; `size` is how
    many were read (fewer than `limit`: none is left)."""
    chunk = GrantChunk()
    rows = conn.execute(db.q("grant_stored_results"), {
        "course_id": course_id, "after_at": after[0], "after_id": after[1], "limit": limit,
        "part": part, "parts": parts, "source": source, "tz": tz}, prepare=False).fetchall()
    for row in rows:
        if row["kind"] == "last":
            chunk.size, chunk.after = row["size"], (row["completed_at"], row["result_id"])
            continue
        chunk.grants_created += 1
        chunk.granted_competences.setdefault(row["result_id"], set()).add(row["competence_id"])
    return chunk


def evaluate_results(conn: psycopg.Connection, result_ids: list[str], *, source: str, tz: str) -> Outcome:
    """Decide the given stored results again and grant what they earn; idempotent.

    The outcome's statuses cover every given result that is stored.
    """
    out = Outcome()
    if not result_ids:
        return out
    # Not prepared: a generic plan of these set-based statements (made for arrays of unknown
    # length) costs more per batch than planning each one for its own arrays (~0.5 ms).
    rows = conn.execute(
        db.q("evaluate_results"), {"ids": result_ids, "source": source, "tz": tz}, prepare=False
    ).fetchall()
    out._count(rows)
    return out


# SQLSTATE classes of errors that storing the same data again meets again: data exception,
# integrity constraint violation, program limit exceeded (e.g. an index row too large).
UNSTORABLE_CLASSES = ("22", "23", "54")
# Where records of InfoCaption's API that could not be read or stored are kept for ops: a
# dead letter of no queue (nothing to replay it to; a replay skips it).
BAD_RECORDS_QUEUE = "infocaption-api"
BAD_RECORD_MAX = 65536  # characters of a kept record


def unstorable(exc: BaseException) -> bool:
    """Tell whether an error means the database refuses this data for good."""
    if isinstance(exc, UnicodeError):
        return True  # text PostgreSQL cannot hold (a lone surrogate), refused before sending
    if isinstance(exc, psycopg.Error):
        sqlstate = exc.sqlstate
        if sqlstate:
            return sqlstate[:2] in UNSTORABLE_CLASSES
        return isinstance(exc, psycopg.DataError)  # refused by psycopg before it was sent
    return False


def storable_text(value: str, limit: int = 4000) -> str:
    """The text itself where PostgreSQL can hold it; lone surrogates and NUL as escapes."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")[:limit]


def apply_results_keeping_going(
    conn: psycopg.Connection, records: list[ResultRecord], *, source: str, tz: str,
    apply=None,
) -> tuple[Outcome, list[tuple[ResultRecord, str]]]:
    """Record results with `apply` (apply_results unless given, e.g. store_results); leave out
    and return those the database refuses.

    The batch is stored in a savepoint; when the database refuses it for good (`unstorable`),
    each record is stored in a savepoint of its own, so that one bad record costs only itself.
    Returns the outcome and the refused records with their error (for `keep_bad_records`).
    """
    apply = apply or apply_results
    try:
        with conn.transaction():
            return apply(conn, records, source=source, tz=tz), []
    except Exception as exc:  # noqa: BLE001 - sorted below
        if not unstorable(exc):
            raise
        log.warning("a page of %d result(s) was refused (%s); storing them one by one",
                    len(records), exc.__class__.__name__)
    out, refused = Outcome(), []
    for rec in records:
        try:
            with conn.transaction():
                out.add(apply(conn, [rec], source=source, tz=tz))
        except Exception as exc:  # noqa: BLE001 - sorted below
            if not unstorable(exc):
                raise
            refused.append((rec, f"{exc.__class__.__name__}: {exc}"))
    return out, refused


def keep_bad_records(conn: psycopg.Connection, bad: list[tuple[object, str]], *, source: str,
                     course_id: int, link_id: int | None = None) -> int:
    """Keep records of InfoCaption's API that could not be read or stored, for ops.

    `bad` holds (record as served, or the ResultRecord refused, error). Each is kept in
    dead_letters (queue BAD_RECORDS_QUEUE) in a form that can always be stored: the record as
    ASCII-escaped JSON text. A record kept before and still pending is not kept again. Returns
    how many were given (what the caller counts in `errors`).
    """
    for record, error in bad:
        if isinstance(record, ResultRecord):
            record = dataclasses.asdict(record)
        text = json.dumps(record, ensure_ascii=True, default=str, sort_keys=True)[:BAD_RECORD_MAX]
        rid = record.get("resultId", record.get("id")) if isinstance(record, dict) else None
        payload = {"source": source, "course_id": course_id, "link_id": link_id,
                   "result_id": None if rid is None else storable_text(str(rid), 200),
                   "record": text}
        conn.execute(db.q("keep_bad_record"), {
            "queue": BAD_RECORDS_QUEUE, "payload": Jsonb(payload), "course_id": course_id,
            "record": text, "error": storable_text(error),
        })
    return len(bad)


def process_events(conn: psycopg.Connection, events: list[dict], *, tz: str, source: str = "webhook") -> Outcome:
    """Apply a batch of queued webhook events; the caller commits."""
    out = Outcome()
    fresh = claim_webhooks(conn, events)
    out.duplicates = len(events) - len(fresh)
    results = [ResultRecord.from_event(e) for e in fresh if e["type"] == RESULT_EVENT]
    for event in fresh:
        if event["type"] in STATUS_EVENTS:
            out.add(apply_course_status(
                conn, event["course"], STATUS_EVENTS[event["type"]],
                message.happened_at(event),
                source="webhook", webhook_id=event.get("webhook_id"), tz=tz,
            ))
    if results:
        out.add(apply_results(conn, results, source=source, tz=tz))
    return out


def apply_results(conn: psycopg.Connection, records: list[ResultRecord], *, source: str, tz: str) -> Outcome:
    """Record results and grant what the new or changed ones earn."""
    out = record_results(conn, records, source=source, tz=tz)
    out.results = len(records)
    out.unchanged = len({r.id for r in records}) - len(out.statuses)
    return out


def apply_course_status(
    conn: psycopg.Connection,
    course: dict,
    status: str,
    changed_at: datetime,
    *,
    source: str,
    tz: str,
    webhook_id: str | None = None,
) -> Outcome:
    """Record a course's status change and re-decide the results it concerns (rule 6).

    Results completed at or after the change are decided again, so a change that arrives late
    has the same effect as one that arrived in order.
    """
    out = Outcome()
    conn.execute(db.q("upsert_course"), course)
    row = conn.execute(
        db.q("record_course_status"),
        {"course_id": course["id"], "status": status, "changed_at": changed_at,
         "source": source, "webhook_id": webhook_id},
    ).fetchone()
    if row is None:
        return out  # this very change was recorded before
    out.status_changes = 1
    grant_source = "webhook" if source == "webhook" else "reconciliation"
    conn.execute(db.q("refresh_course_status"), {"course_id": course["id"]})
    ids = [r["id"] for r in conn.execute(
        db.q("course_result_ids_since"), {"course_id": course["id"], "since": changed_at}
    ).fetchall()]
    if not ids:
        return out
    out.add(_grants_only(evaluate_results(conn, ids, source=grant_source, tz=tz)))
    withdrawn = conn.execute(db.q("withdraw_grants_of_ungranting_results"), {"ids": ids}).fetchall()
    if withdrawn:
        # Another result of the same employee may earn what the withdrawn grant gave.
        employees = sorted({w["employee_id"] for w in withdrawn})
        again = [r["id"] for r in conn.execute(
            db.q("granted_result_ids_for_employees"), {"employee_ids": employees}
        ).fetchall()]
        out.add(_grants_only(evaluate_results(conn, again, source=grant_source, tz=tz)))
    return out


def _grants_only(out: Outcome) -> Outcome:
    """The grant counts of re-deciding results: a status change is one event, not a result's."""
    return Outcome(grants_created=out.grants_created, grants_renewed=out.grants_renewed)


def grant_unmatched(conn: psycopg.Connection, emails: list[str], *, tz: str) -> Outcome:
    """Grant the kept unmatched results of these emails (employees were created or corrected)."""
    ids = [r["id"] for r in conn.execute(
        db.q("unmatched_result_ids_for_emails"), {"emails": sorted({normalize_email(e) for e in emails})}
    ).fetchall()]
    return evaluate_results(conn, ids, source="employee_update", tz=tz)

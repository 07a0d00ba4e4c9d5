"""The benchmark's data: a seeded template database and the webhooks and queued events.

The organisation: 100,000 employees, 200 published courses each linked to 2 competences, and
100 more competences that no course grants (they carry the growth grants). Webhook i is
employee i's result of a course drawn from a seeded generator; every 10th result failed; the
email is employee i's in a mixed case, so every result matches only after normalisation.
"""
from __future__ import annotations

import json
import random
import re
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path

import psycopg

from service.platform.migrate import migrate
from service.ingest.schema import parse_event

EMPLOYEES = 100_000
COURSES = 200
FIRST_COURSE = 100_000
PER_COURSE = 2
UNLINKED = 100  # x 100,000 employees = the 10,000,000 growth grants
SEED = 20261130

_BLOCK = re.compile(r"^-- name: (?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


@cache
def _queries() -> dict[str, str]:
    text = (Path(__file__).parent / "bench.sql").read_text()
    marks = list(_BLOCK.finditer(text))
    return {m["name"]: text[m.end():(marks[i + 1].start() if i + 1 < len(marks) else len(text))].strip()
            for i, m in enumerate(marks)}


def q(name: str) -> str:
    """Return a named query of bench/bench.sql."""
    return _queries()[name]


def seed(url: str) -> None:
    """Migrate an empty database and fill it with the organisation."""
    with psycopg.connect(url, autocommit=True) as conn:
        from psycopg.rows import dict_row

        conn.row_factory = dict_row
        migrate(conn)
    with psycopg.connect(url) as conn:
        params = {"linked": COURSES * PER_COURSE, "unlinked": UNLINKED, "courses": COURSES,
                  "first_course": FIRST_COURSE, "per_course": PER_COURSE, "employees": EMPLOYEES}
        conn.execute(q("seed_competences"), params)
        conn.execute(q("seed_competence_sequence"))
        conn.execute(q("seed_courses"), params)
        conn.execute(q("seed_links"), params)
        conn.execute(q("seed_employees"), params)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def add_growth_grants(url: str) -> int:
    """Give every employee every unlinked competence (10 M grants), set-based; return the count."""
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers: valid by construction
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute(q("growth_drop_grant_indexes"))
        conn.execute(q("growth_drop_competence_index"))
        conn.execute(q("growth_insert_grants"))
        conn.execute(q("growth_restore_grant_indexes"))
        conn.execute(q("growth_restore_competence_index"))
        conn.execute("SELECT setval('grants_id_seq', (SELECT max(id) FROM grants))")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE) grants")
        return conn.execute(q("count_grants")).fetchone()[0]


def mixed_case(rng: random.Random, text: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in text)


def webhook_bodies(count: int, *, tag: str, first_employee: int = 0, failed_every: int = 10,
                   seed_: int = SEED) -> list[tuple[str, dict]]:
    """`count` course.completed webhooks as InfoCaption sends them: (webhook id, body)."""
    rng = random.Random(f"{seed_}-{tag}")
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    base = datetime(2025, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=1)))
    out = []
    for i in range(count):
        n = first_employee + i
        course = FIRST_COURSE + rng.randrange(COURSES)
        passed = (i % failed_every) != 0
        completed = base + timedelta(seconds=rng.randrange(300 * 86400))
        body = {
            "type": "course.completed",
            "timestamp": now,
            "data": {
                "resultId": f"r-{tag}-{n}",
                "course": {"id": course, "name": f"Course {course - FIRST_COURSE}", "guideType": 14},
                "user": {"email": mixed_case(rng, f"employee{n}@bench.example"),
                         "firstName": "Bench", "lastName": f"E{n}"},
                "passed": passed,
                "score": 90 if passed else 20,
                "completedAt": completed.isoformat(),
            },
        }
        out.append((f"msg_bench_{tag}_{n}", body))
    return out


def queued_event(webhook_id: str, body: dict, received_at: str) -> dict:
    """The event the webhook endpoint publishes for `body` (what parse_event returns, plus ids)."""
    data = body["data"]
    course, user = data["course"], data["user"]
    return {
        "type": body["type"],
        "timestamp": datetime.fromisoformat(body["timestamp"]).isoformat(),
        "course": {"id": course["id"], "name": course["name"], "guide_type": course["guideType"]},
        "result": {
            "id": data["resultId"], "email": user["email"], "first_name": user["firstName"],
            "last_name": user["lastName"], "passed": data["passed"], "score": float(data["score"]),
            "completed_at": datetime.fromisoformat(data["completedAt"]).isoformat(),
        },
        "webhook_id": webhook_id,
        "received_at": received_at,
    }


def queued_events(count: int, *, tag: str) -> list[dict]:
    """Events as the endpoint queues them; the first ones are checked against parse_event."""
    received_at = datetime.now(timezone.utc).isoformat()
    bodies = webhook_bodies(count, tag=tag)
    events = [queued_event(wid, body, received_at) for wid, body in bodies]
    for (wid, body), event in list(zip(bodies, events))[:50]:
        expected = parse_event(json.loads(json.dumps(body)))
        expected.update(webhook_id=wid, received_at=received_at)
        if expected != event:
            raise AssertionError(f"the bench's queued event differs from the endpoint's: {event} != {expected}")
    return events


def expected_outcome(count: int, failed_every: int = 10) -> dict:
    failed = (count + failed_every - 1) // failed_every
    return {"results": count, "failed": failed, "granted": count - failed,
            "grants": (count - failed) * PER_COURSE}

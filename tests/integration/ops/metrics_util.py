"""Read /metrics the way Prometheus does, and seed what the tests need."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from service.people.email import normalize_email
from tests.conftest import dumps, sign

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def scrape(client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse(response.get_data(as_text=True))


def value(samples: Samples, name: str, **labels) -> float | None:
    """The sample's value; None when the exposition does not carry it at all."""
    return samples.get((name, tuple(sorted(labels.items()))))


def delta(after: Samples, before: Samples, name: str, **labels) -> float:
    return (value(after, name, **labels) or 0.0) - (value(before, name, **labels) or 0.0)


def seed_course_link(conn, course_id: int = 4711) -> tuple[int, int]:
    """A published course linked to one competence; returns (link id, competence id)."""
    conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (%s, 'HLR vuxen', 14)"
                 " ON CONFLICT DO NOTHING", (course_id,))
    main = conn.execute("INSERT INTO competences (name, kind) VALUES ('Vård', 'main_group')"
                        " RETURNING id").fetchone()["id"]
    group = conn.execute("INSERT INTO competences (parent_id, name, kind) VALUES (%s, 'Akut', 'group')"
                         " RETURNING id", (main,)).fetchone()["id"]
    comp = conn.execute("INSERT INTO competences (parent_id, name, kind, default_valid_days)"
                        " VALUES (%s, 'HLR', 'competence', 730) RETURNING id", (group,)).fetchone()["id"]
    link = conn.execute("INSERT INTO links (course_id, competence_id, created_by) VALUES (%s, %s, 'test')"
                        " RETURNING id", (course_id, comp)).fetchone()["id"]
    return link, comp


def set_backfill(conn, link_id: int, state: str, total: int = 0, processed: int = 0,
                 granted: int = 0, already_held: int = 0, not_passed: int = 0,
                 unmatched: int = 0, errors: int = 0) -> None:
    """Put a link's backfill where a running backfill would have it."""
    conn.execute(
        "UPDATE links SET backfill_state = %s, backfill_total = %s, backfill_processed = %s,"
        " backfill_granted = %s, backfill_already_held = %s, backfill_not_passed = %s,"
        " backfill_unmatched = %s, backfill_errors = %s,"
        " backfill_started_at = now() - interval '30 seconds' WHERE id = %s",
        (state, total, processed, granted, already_held, not_passed, unmatched, errors, link_id),
    )


def add_employee(conn, email: str) -> int:
    return conn.execute(
        "INSERT INTO employees (email, email_normalized) VALUES (%s, %s) RETURNING id",
        (email, normalize_email(email)),
    ).fetchone()["id"]


def post(client, body: dict, **sign_kwargs):
    raw = dumps(body)
    return client.post("/webhooks/infocaption", data=raw, headers=sign(raw, **sign_kwargs))

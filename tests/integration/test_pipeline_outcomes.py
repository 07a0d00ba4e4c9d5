"""What each stored result did (service/grants/pipeline.py, Outcome.statuses): `granted` only when
it created a grant (a first one or a next period), `already_held` when the employee held the
competence; on the
real PostgreSQL, through the same statements the worker and the backfill run."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from service.grants.pipeline import ResultRecord, apply_results, evaluate_results, process_events
from tests.conftest import completed_event
from tests.integration.test_pipeline import add_employee, seed_links

pytestmark = pytest.mark.integration

TZ = "Europe/Stockholm"
PASSED_AT = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def event(result_id: str, email: str, msg_id: str, **kwargs) -> dict:
    """A queued event as the web process hands it to the worker."""
    from service.ingest.schema import parse_event

    return dict(parse_event(completed_event(result_id, email, **kwargs)), webhook_id=msg_id)


def record(result_id: str, email: str, *, passed: bool = True, at: datetime = PASSED_AT) -> ResultRecord:
    return ResultRecord(result_id, 4711, "HLR vuxen", 14, email, None, None, passed, 90.0, at, at)


def grants(conn) -> list[dict]:
    return conn.execute("SELECT id, employee_id, competence_id, valid_from, valid_to, result_id,"
                        " updated_at FROM grants ORDER BY id").fetchall()


def test_an_event_for_an_employee_who_holds_the_competence_is_already_held_and_grants_nothing(conn):
    [comp] = seed_links(conn, valid_days=(730,))
    emp = add_employee(conn, "anna.andersson@kommun.se")
    conn.execute("INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source)"
                 " VALUES (%s, %s, '2026-01-01', '2027-12-31', 'manual')", (emp, comp))
    before = grants(conn)
    with conn.transaction():
        out = process_events(conn, [event("r-held", "Anna.Andersson@kommun.se", "m-held")], tz=TZ)
    assert out.statuses == {"r-held": "already_held"}
    assert (out.grants_created, out.grants_renewed) == (0, 0)
    assert grants(conn) == before
    # the stored status stays the classification (the unmatched report reads it)
    assert conn.execute("SELECT status FROM results WHERE id = 'r-held'").fetchone()["status"] == "granted"


def test_each_result_of_a_batch_says_what_it_did(conn):
    comps = seed_links(conn, valid_days=(730, None))
    add_employee(conn, "anna.andersson@kommun.se")
    add_employee(conn, "bo.berg@kommun.se")
    later = PASSED_AT + timedelta(days=3)
    with conn.transaction():
        out = apply_results(conn, [
            record("r-first", "anna.andersson@kommun.se"),
            record("r-second", "anna.andersson@kommun.se", at=later),  # the first one gave it
            record("r-failed", "bo.berg@kommun.se", passed=False),
            record("r-nobody", "nobody@kommun.se"),
        ], source="webhook", tz=TZ)
    assert out.statuses == {"r-first": "granted", "r-second": "already_held",
                            "r-failed": "not_passed", "r-nobody": "unmatched"}
    assert out.grants_created == 2  # both linked competences, from the first pass
    assert out.granted_competences == {"r-first": set(comps)}

    # decided again (as a backfill does for stored results): nothing new, every one says so
    with conn.transaction():
        again = evaluate_results(conn, ["r-first", "r-second", "r-failed", "r-nobody"],
                                 source="backfill", tz=TZ)
    assert again.statuses == {"r-first": "already_held", "r-second": "already_held",
                              "r-failed": "not_passed", "r-nobody": "unmatched"}
    assert again.grants_created == 0 and again.granted_competences == {}


def test_a_pass_that_renews_a_grant_is_granted_and_one_without_a_link_says_no_link(conn):
    # Changed meaning: a renewal is a new grant from the day after the one held ends.
    [comp] = seed_links(conn, valid_days=(365,), window=365)
    emp = add_employee(conn, "anna.andersson@kommun.se")
    conn.execute("INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source)"
                 " VALUES (%s, %s, '2026-01-01', '2026-12-31', 'webhook')", (emp, comp))
    conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (4712, 'Hygien', 14)")
    with conn.transaction():
        out = apply_results(conn, [
            record("r-renews", "anna.andersson@kommun.se"),
            ResultRecord("r-unlinked", 4712, "Hygien", 14, "anna.andersson@kommun.se", None, None,
                         True, 90.0, PASSED_AT, PASSED_AT),
        ], source="webhook", tz=TZ)
    assert out.statuses == {"r-renews": "granted", "r-unlinked": "no_link"}
    assert (out.grants_created, out.grants_renewed) == (1, 1)
    assert [(str(g["valid_from"]), str(g["valid_to"]), g["result_id"]) for g in grants(conn)] == [
        ("2026-01-01", "2026-12-31", None), ("2027-01-01", "2028-01-01", "r-renews")]

"""Grants as periods (docs/rules.md, rule 3 and rule 5) through the statements the worker, the
backfill and the reconciliation run: a new grant after expiry, the next period within the
renewal window, nothing while held, late results only where they fit, one call deciding as
many calls in completion order would, revocations kept as history."""
from __future__ import annotations

import random
import threading
from datetime import date, datetime, timedelta, timezone

import pytest

from service.grants.grants import revoke_grant
from service.grants.pipeline import ResultRecord, apply_results, evaluate_results
from service.platform import db
from tests.integration.test_pipeline import add_employee, seed_links

pytestmark = pytest.mark.integration

TZ = "Europe/Stockholm"
ANNA = "anna.andersson@kommun.se"


def at(day: str) -> datetime:
    """Noon UTC of a day: the same date in Stockholm."""
    return datetime.fromisoformat(day).replace(hour=12, tzinfo=timezone.utc)


def record(result_id: str, day: str, email: str = ANNA, *, course: int = 4711) -> ResultRecord:
    return ResultRecord(result_id, course, "HLR vuxen", 14, email, None, None, True, 90.0, at(day), at(day))


def periods(conn, competence: int, employee: int | None = None) -> list[tuple]:
    """The grants of a competence: (valid_from, valid_to, result_id, revoked), oldest first."""
    return [(r["valid_from"], r["valid_to"], r["result_id"], r["revoked_at"] is not None)
            for r in conn.execute(
                "SELECT valid_from, valid_to, result_id, revoked_at FROM grants"
                " WHERE competence_id = %s AND (%s::bigint IS NULL OR employee_id = %s)"
                " ORDER BY valid_from, id", (competence, employee, employee))]


def store(conn, competence: int, employee: int, first: str, last: str | None, result_id: str,
          source: str = "webhook") -> None:
    conn.execute("INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source, result_id)"
                 " VALUES (%s, %s, %s, %s, %s, %s)", (employee, competence, first, last, source, result_id))


def d(text: str) -> date:
    return date.fromisoformat(text)


def test_the_issues_case_a_pass_after_expiry_starts_a_new_grant_and_keeps_the_old_one(conn):
    [hlr] = seed_links(conn, valid_days=(730,))
    emp = add_employee(conn, ANNA)
    store(conn, hlr, emp, "2024-04-12", "2026-04-12", "r-2024")  # expired 2026-04-12
    out = apply_results(conn, [record("r-new", "2026-12-01")], source="webhook", tz=TZ)
    assert out.statuses == {"r-new": "granted"}
    assert (out.grants_created, out.grants_renewed) == (1, 1)  # a new period after an earlier one
    assert periods(conn, hlr) == [(d("2024-04-12"), d("2026-04-12"), "r-2024", False),
                                  (d("2026-12-01"), d("2028-11-30"), "r-new", False)]
    statuses = [r["s"] for r in conn.execute(
        "SELECT grant_status(valid_from, valid_to, revoked_at, '2026-12-01') AS s FROM grants"
        " ORDER BY valid_from")]
    assert statuses == ["expired", "active"]
    # the same result again (a redelivery, a reconciliation, a backfill): nothing changes
    again = evaluate_results(conn, ["r-new"], source="reconciliation", tz=TZ)
    assert again.statuses == {"r-new": "already_held"} and again.grants_created == 0
    assert len(periods(conn, hlr)) == 2


def test_a_pass_within_the_renewal_window_starts_the_next_grant_the_day_after_the_end(conn):
    [hlr] = seed_links(conn, valid_days=(365,), window=60)
    emp = add_employee(conn, ANNA)
    store(conn, hlr, emp, "2026-01-01", "2027-01-01", "r-first")
    out = apply_results(conn, [record("r-renew", "2026-11-15")], source="webhook", tz=TZ)
    assert out.statuses == {"r-renew": "granted"} and out.grants_renewed == 1
    assert periods(conn, hlr) == [(d("2026-01-01"), d("2027-01-01"), "r-first", False),
                                  (d("2027-01-02"), d("2028-01-02"), "r-renew", False)]
    # another pass in the window: the next period is there already (upcoming), nothing more
    out = apply_results(conn, [record("r-more", "2026-12-20")], source="webhook", tz=TZ)
    assert out.statuses == {"r-more": "already_held"}
    # the renewing result decided again never renews again (its own grant covers nothing new)
    assert evaluate_results(conn, ["r-renew"], source="backfill", tz=TZ).grants_created == 0
    assert len(periods(conn, hlr)) == 2


def test_a_pass_before_the_window_or_without_a_window_creates_nothing(conn):
    windowed, plain = seed_links(conn, valid_days=(365, 365))
    conn.execute("UPDATE competences SET renewal_window_days = 30 WHERE id = %s", (windowed,))
    emp = add_employee(conn, ANNA)
    store(conn, windowed, emp, "2026-01-01", "2027-01-01", "r-w")
    store(conn, plain, emp, "2026-01-01", "2027-01-01", "r-p")
    out = apply_results(conn, [record("r-early", "2026-11-15")], source="webhook", tz=TZ)  # 47 days before
    assert out.statuses == {"r-early": "already_held"} and out.grants_created == 0
    out = apply_results(conn, [record("r-late", "2026-12-31")], source="webhook", tz=TZ)  # 1 day before
    assert out.statuses == {"r-late": "granted"}
    assert periods(conn, windowed)[-1] == (d("2027-01-02"), d("2028-01-02"), "r-late", False)
    assert periods(conn, plain) == [(d("2026-01-01"), d("2027-01-01"), "r-p", False)]  # no window: no renewal
    # after expiry the one without a window gets its new period too
    apply_results(conn, [record("r-after", "2027-03-01")], source="webhook", tz=TZ)
    assert periods(conn, plain)[-1] == (d("2027-03-01"), d("2028-02-29"), "r-after", False)


def test_a_competence_that_never_expires_is_granted_once(conn):
    [forever] = seed_links(conn, valid_days=(None,), window=365)
    add_employee(conn, ANNA)
    out = apply_results(conn, [record("r-1", "2025-01-01"), record("r-2", "2026-06-01")],
                        source="webhook", tz=TZ)
    assert out.statuses == {"r-1": "granted", "r-2": "already_held"}
    apply_results(conn, [record("r-3", "2030-01-01"), record("r-0", "2020-01-01")], source="webhook", tz=TZ)
    assert periods(conn, forever) == [(d("2025-01-01"), None, "r-1", False)]


def test_a_late_earlier_result_adds_a_grant_only_where_it_does_not_overlap(conn):
    [hlr] = seed_links(conn, valid_days=(365,))
    emp = add_employee(conn, ANNA)
    store(conn, hlr, emp, "2026-06-01", "2027-06-01", "r-later")
    # completed 2025-09-01: its year would run into the grant held -> nothing, the grant stays
    out = apply_results(conn, [record("r-overlaps", "2025-09-01")], source="backfill", tz=TZ)
    assert out.statuses == {"r-overlaps": "already_held"}
    assert periods(conn, hlr) == [(d("2026-06-01"), d("2027-06-01"), "r-later", False)]
    # completed 2025-05-01: its year ends 2026-05-01, before the grant held -> an earlier grant
    out = apply_results(conn, [record("r-fits", "2025-05-01")], source="backfill", tz=TZ)
    assert out.statuses == {"r-fits": "granted"} and out.grants_renewed == 0  # before, not after
    assert periods(conn, hlr) == [(d("2025-05-01"), d("2026-05-01"), "r-fits", False),
                                  (d("2026-06-01"), d("2027-06-01"), "r-later", False)]


HISTORY = ["2022-03-01", "2022-11-20", "2023-02-10", "2023-05-01", "2024-01-15", "2024-02-20",
           "2024-12-24", "2025-01-10", "2026-06-30", "2026-07-01"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_call_with_many_results_decides_as_one_by_one_in_completion_order(conn, seed):
    windowed, plain = seed_links(conn, valid_days=(365, 300))
    conn.execute("UPDATE competences SET renewal_window_days = 90 WHERE id = %s", (windowed,))
    one, many, stored = (add_employee(conn, f"{who}@kommun.se") for who in ("one", "many", "stored"))
    shuffled = list(enumerate(HISTORY))
    random.Random(seed).shuffle(shuffled)
    # the reference: one call per result, in completion order
    for i, day in enumerate(HISTORY):
        apply_results(conn, [record(f"one-{i}", day, "one@kommun.se")], source="webhook", tz=TZ)
    # the worker's path: one call, the results in shuffled order
    out = apply_results(conn, [record(f"many-{i}", day, "many@kommun.se") for i, day in shuffled],
                        source="webhook", tz=TZ)
    # the backfill's path: results stored first (course not linked then), then decided in one call
    conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (4712, 'HLR igen', 14)")
    apply_results(conn, [record(f"stored-{i}", day, "stored@kommun.se", course=4712) for i, day in shuffled],
                  source="backfill", tz=TZ)
    for comp in (windowed, plain):
        conn.execute("INSERT INTO links (course_id, competence_id, created_by) VALUES (4712, %s, 't')", (comp,))
    evaluate_results(conn, [f"stored-{i}" for i, _ in shuffled], source="backfill", tz=TZ)

    def shape(employee, comp, prefix):
        return [(a, b, r.removeprefix(prefix)) for a, b, r, _ in periods(conn, comp, employee)]
    for comp in (windowed, plain):
        reference = shape(one, comp, "one-")
        assert len(reference) >= 3, reference  # new periods after expiry, renewals
        assert shape(many, comp, "many-") == reference
        assert shape(stored, comp, "stored-") == reference
    granted = {r for r, o in out.statuses.items() if o == "granted"}
    assert granted == {r for comp in (windowed, plain) for _, _, r, _ in periods(conn, comp, many)}
    # the windowed competence renewed into a continuous period at least once
    w = periods(conn, windowed, one)
    assert any(b[0] == a[1] + timedelta(days=1) for a, b in zip(w, w[1:])), w


def test_a_revoked_grant_stays_as_history_and_only_a_later_pass_grants_anew(conn):
    [hlr] = seed_links(conn, valid_days=(365,))
    emp = add_employee(conn, ANNA)
    apply_results(conn, [record("r-1", "2026-06-01")], source="webhook", tz=TZ)
    [gid] = [r["id"] for r in conn.execute("SELECT id FROM grants")]
    revoked = revoke_grant(conn, gid, "wrong person", actor="admin", tz=TZ)
    assert (revoked["status"], revoked["revoked_reason"]) == ("revoked", "wrong person")
    revoked_at = revoked["revoked_at"]
    # the same result, and one completed before the revocation, decided again: nothing
    apply_results(conn, [record("r-0", "2026-05-01")], source="backfill", tz=TZ)
    out = evaluate_results(conn, ["r-1", "r-0"], source="reconciliation", tz=TZ)
    assert out.statuses == {"r-1": "already_held", "r-0": "already_held"} and out.grants_created == 0
    assert periods(conn, hlr) == [(d("2026-06-01"), d("2027-06-01"), "r-1", True)]
    # a pass completed after the revocation: a new grant, the revoked one kept
    later = revoked_at + timedelta(minutes=1)
    out = apply_results(conn, [ResultRecord("r-2", 4711, "HLR vuxen", 14, ANNA, None, None, True, 90.0,
                                            later, later)], source="webhook", tz=TZ)
    assert out.statuses == {"r-2": "granted"}
    rows = periods(conn, hlr, emp)
    assert [(r[2], r[3]) for r in rows] == [("r-1", True), ("r-2", False)]


def test_two_transactions_deciding_overlapping_periods_at_once_make_one(conn, database_url):
    """The exclusion constraint and ON CONFLICT DO NOTHING: the later transaction makes nothing."""
    [hlr] = seed_links(conn, valid_days=(365,))
    add_employee(conn, ANNA)
    apply_results(conn, [record("r-a", "2026-01-10")], source="backfill", tz=TZ)
    conn.execute("UPDATE results SET status = 'received'")
    conn.execute("DELETE FROM grants")
    first = db.connect(database_url)  # not autocommit: a transaction until commit()
    second = db.connect(database_url, autocommit=True)
    try:
        assert evaluate_results(first, ["r-a"], source="backfill", tz=TZ).grants_created == 1
        done = {}

        def other():
            with second.transaction():
                done["out"] = apply_results(second, [record("r-b", "2026-03-01")], source="webhook", tz=TZ)
        thread = threading.Thread(target=other)
        thread.start()
        # the second one waits on the first one's grant; it ends after the first commits
        waiting = lambda: conn.execute(  # noqa: E731
            "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()").fetchone()["n"]
        for _ in range(500):
            if waiting() or not thread.is_alive():
                break
            threading.Event().wait(0.02)
        first.commit()
        thread.join(timeout=60)
        assert not thread.is_alive()
    finally:
        first.close()
        second.close()
    assert done["out"].statuses == {"r-b": "already_held"} and done["out"].grants_created == 0
    assert [(p[2], p[3]) for p in periods(conn, hlr)] == [("r-a", False)]


def test_a_course_found_unpublished_withdraws_the_period_it_gave_but_not_revoked_history(conn):
    from service.grants.pipeline import apply_course_status

    [hlr] = seed_links(conn, valid_days=(365,))
    emp = add_employee(conn, ANNA)
    apply_results(conn, [record("r-2024", "2024-01-10"), record("r-2025", "2025-02-01"),
                         record("r-2026", "2026-03-01")], source="webhook", tz=TZ)
    assert [p[2] for p in periods(conn, hlr)] == ["r-2024", "r-2025", "r-2026"]
    [revoked] = [r["id"] for r in conn.execute("SELECT id FROM grants WHERE result_id = 'r-2026'")]
    revoke_grant(conn, revoked, "recorded twice", actor="admin", tz=TZ)
    # the course turns out to have been unpublished from 2025-01-01 (a late event): the 2025
    # period is withdrawn (its pass granted nothing); the revoked 2026 grant stays as history
    course = {"id": 4711, "name": "HLR vuxen", "guide_type": 14}
    apply_course_status(conn, course, "unpublished", at("2025-01-01"), source="webhook", tz=TZ)
    assert periods(conn, hlr, emp) == [(d("2024-01-10"), d("2025-01-09"), "r-2024", False),
                                       (d("2026-03-01"), d("2027-03-01"), "r-2026", True)]


def test_a_result_seen_again_changes_nothing_even_where_it_lies_in_its_own_renewal_window(conn):
    # renewal_window_days as long as the validity (what renew_on_completion became): any pass
    # while holding it starts the next period, but not the pass that made the grant held
    [hlr] = seed_links(conn, valid_days=(365,), window=365)
    add_employee(conn, ANNA)
    apply_results(conn, [record("r-1", "2026-06-01")], source="webhook", tz=TZ)
    for source in ("reconciliation", "backfill", "employee_update"):
        out = evaluate_results(conn, ["r-1"], source=source, tz=TZ)
        assert out.statuses == {"r-1": "already_held"} and out.grants_created == 0, source
    assert periods(conn, hlr) == [(d("2026-06-01"), d("2027-06-01"), "r-1", False)]
    # another pass while holding it does start the next period
    apply_results(conn, [record("r-2", "2026-06-15")], source="webhook", tz=TZ)
    assert periods(conn, hlr)[-1] == (d("2027-06-02"), d("2028-06-01"), "r-2", False)

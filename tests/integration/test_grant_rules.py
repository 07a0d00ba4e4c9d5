"""The rules of the grant statements one by one, as PostgreSQL states them (migrations 0007-0009)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from service.platform import db

STOCKHOLM = "Europe/Stockholm"
T = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


def one(conn, sql: str, *args):
    """Return the single value a query gives."""
    return next(iter(conn.execute(sql, args).fetchone().values()))


@pytest.mark.parametrize(
    "completed, tz, expected",
    [
        ("2026-11-29T23:30:00+00:00", STOCKHOLM, date(2026, 11, 30)),  # docs/rules.md, "Validity"
        ("2026-11-29T23:30:00+00:00", "UTC", date(2026, 11, 29)),  # another zone, another day
        ("2026-11-29T22:59:59+00:00", STOCKHOLM, date(2026, 11, 29)),
        ("2026-11-29T12:00:00+01:00", STOCKHOLM, date(2026, 11, 29)),
        ("2026-07-14T22:30:00+00:00", STOCKHOLM, date(2026, 7, 15)),  # summer time: UTC+2
        ("2026-07-14T21:59:00+00:00", STOCKHOLM, date(2026, 7, 14)),
        ("2026-03-29T00:30:00+00:00", STOCKHOLM, date(2026, 3, 29)),  # the night summer time starts
    ],
)
def test_valid_from_is_the_completion_date_in_the_organisations_time_zone(conn, completed, tz, expected):
    assert one(conn, "SELECT valid_from(%s, %s)", datetime.fromisoformat(completed), tz) == expected


def test_valid_from_does_not_depend_on_the_sessions_time_zone(conn):
    conn.execute("SET TimeZone = 'America/Los_Angeles'")
    assert one(conn, "SELECT valid_from(%s, %s)", datetime(2026, 11, 29, 23, 30, tzinfo=timezone.utc),
               STOCKHOLM) == date(2026, 11, 30)


def test_valid_to_adds_the_default_days_or_never_expires(conn):
    assert one(conn, "SELECT valid_to(%s, %s)", date(2026, 11, 30), 730) == date(2028, 11, 29)  # a leap year
    assert one(conn, "SELECT valid_to(%s, %s)", date(2026, 11, 30), 1) == date(2026, 12, 1)
    assert one(conn, "SELECT valid_to(%s, %s::integer)", date(2026, 11, 30), None) is None


@pytest.fixture
def course(conn):
    conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (4711, 'HLR', 14)")
    return 4711


def change(conn, course_id: int, status: str, at: datetime) -> None:
    conn.execute("INSERT INTO course_status_changes (course_id, status, changed_at, source)"
                 " VALUES (%s, %s, %s, 'test')", (course_id, status, at))


def status_at(conn, course_id: int, moment: datetime) -> str | None:
    row = conn.execute("SELECT status FROM course_status_at(%s, %s)", (course_id, moment)).fetchone()
    return row and row["status"]


def status_now(conn, course_id: int) -> tuple[str, datetime] | None:
    row = conn.execute("SELECT status, changed_at FROM course_status_at(%s, 'infinity')",
                       (course_id,)).fetchone()
    return row and (row["status"], row["changed_at"])


def test_the_course_status_at_a_moment_is_its_latest_change_by_then(conn, course):
    assert status_at(conn, course, T) is None  # never changed: no row (published, result_status)
    # Arriving out of order changes nothing: the changes' own times decide.
    change(conn, course, "published", T + timedelta(hours=2))
    change(conn, course, "unpublished", T + timedelta(hours=1))
    assert status_at(conn, course, T) is None
    assert status_at(conn, course, T + timedelta(hours=1)) == "unpublished"  # at the change: it counts
    assert status_at(conn, course, T + timedelta(minutes=90)) == "unpublished"
    assert status_at(conn, course, T + timedelta(hours=3)) == "published"
    assert status_now(conn, course) == ("published", T + timedelta(hours=2))  # what the catalog shows
    # Two changes at the same time: the one recorded last.
    change(conn, course, "deleted", T + timedelta(hours=2))
    assert status_at(conn, course, T + timedelta(hours=3)) == "deleted"
    assert status_now(conn, course) == ("deleted", T + timedelta(hours=2))
    assert status_at(conn, 4712, T + timedelta(hours=3)) is None  # another course


def result_status(conn, passed: bool, course_id: int, completed_at: datetime, employee_id: int | None) -> str:
    return one(conn, "SELECT status FROM result_status(%s, %s, %s, %s::bigint)",
               passed, course_id, completed_at, employee_id)


def test_what_a_result_earns_is_decided_in_order(conn, course):
    employee = one(conn, "INSERT INTO employees (email, email_normalized)"
                         " VALUES ('anna@kommun.se', 'anna@kommun.se') RETURNING id")
    # No link yet; the course becomes unpublished at T + 1 h.
    change(conn, course, "unpublished", T + timedelta(hours=1))
    later = T + timedelta(hours=2)
    assert result_status(conn, False, course, later, None) == "failed"  # first of all
    assert result_status(conn, True, course, later, None) == "course_not_published"  # before unmatched
    assert result_status(conn, True, course, T, None) == "unmatched"  # completed while published
    assert result_status(conn, True, course, T, employee) == "no_link"
    competence = one(conn, "WITH m AS (INSERT INTO competences (name, kind) VALUES ('m', 'main_group')"
                           " RETURNING id) INSERT INTO competences (parent_id, name, kind)"
                           " SELECT id, 'HLR', 'competence' FROM m RETURNING id")
    conn.execute("INSERT INTO links (course_id, competence_id, created_by) VALUES (%s, %s, 'test')",
                 (course, competence))
    assert result_status(conn, True, course, T, employee) == "granted"
    assert result_status(conn, True, course, later, employee) == "course_not_published"
    change(conn, course, "published", T + timedelta(hours=3))
    assert result_status(conn, True, course, T + timedelta(hours=3), employee) == "granted"
    assert result_status(conn, False, course, T, employee) == "failed"


def period(start: str, end: str | None) -> tuple[date, date | None]:
    return date.fromisoformat(start), None if end is None else date.fromisoformat(end)


HLR = period("2024-04-12", "2026-04-12")  # two years, expired on 2026-04-12


@pytest.mark.parametrize(
    "day, days, window, held, starts",
    [
        # nothing held: a grant from the pass date
        ("2026-12-01", 365, None, [], period("2026-12-01", "2027-12-01")),
        # the case: the latest grant expired, a new pass starts a new grant
        ("2026-12-01", 730, None, [HLR], period("2026-12-01", "2028-11-30")),
        # held on the day, no window: renewal only after expiry
        ("2026-03-01", 730, None, [HLR], None),
        # within the window before the end: the next grant from the day after it ends
        ("2026-03-01", 730, 90, [HLR], period("2026-04-13", "2028-04-12")),
        ("2026-01-12", 730, 90, [HLR], period("2026-04-13", "2028-04-12")),  # the window's first day
        ("2026-01-11", 730, 90, [HLR], None),  # a day before the window
        ("2026-04-12", 730, 0, [HLR], period("2026-04-13", "2028-04-12")),  # window 0: the last day
        # the next period is there already (upcoming): nothing more
        ("2026-03-01", 730, 90, [HLR, period("2026-04-13", "2028-04-12")], None),
        # never expires: granted once
        ("2030-01-01", None, 90, [period("2024-01-01", None)], None),
        ("2024-01-01", None, None, [], period("2024-01-01", None)),
        # a late result before the grant held: only where it does not overlap
        ("2023-01-01", 365, None, [HLR], period("2023-01-01", "2024-01-01")),
        ("2023-06-01", 365, None, [HLR], None),
        ("2024-04-11", 1, None, [HLR], None),  # would end on the grant's first day
        ("2024-04-10", 1, None, [HLR], period("2024-04-10", "2024-04-11")),
        # in a gap between two periods: only if it fits the gap
        ("2026-06-01", 30, None, [HLR, period("2027-01-01", "2027-12-31")], period("2026-06-01", "2026-07-01")),
        ("2026-06-01", 365, None, [HLR, period("2027-01-01", "2027-12-31")], None),
    ],
)
def test_a_pass_starts_a_period_after_expiry_within_the_window_or_where_it_fits(
        conn, day, days, window, held, starts):
    """docs/rules.md, rule 3: grant_period (migration 0009)."""
    ranges = [f"[{a},{'' if b is None else b}]" for a, b in held]
    row = conn.execute("SELECT valid_from, valid_to FROM grant_period(%s::date, %s::integer,"
                       " %s::integer, %s::daterange[])", (day, days, window, ranges)).fetchone()
    assert (None if row is None else (row["valid_from"], row["valid_to"])) == starts


@pytest.mark.parametrize("status, created_grant, outcome", [
    ("granted", True, "granted"), ("granted", False, "already_held"),
    ("failed", False, "not_passed"), ("unmatched", False, "unmatched"),
    ("course_not_published", False, "course_not_published"), ("no_link", False, "no_link"),
])
def test_what_a_result_did_follows_from_its_status_and_whether_it_created_a_grant(
        conn, status, created_grant, outcome):
    assert one(conn, "SELECT result_outcome(%s, %s)", status, created_grant) == outcome


@pytest.mark.parametrize("revoked_result, revoked_at, result, completed_at, bars", [
    ("r-1", T, "r-1", T - timedelta(days=1), True),  # the revoked result itself
    ("r-1", T, "r-1", T + timedelta(days=1), True),  # ... whenever it was completed
    ("r-1", T, "r-2", T - timedelta(days=1), True),  # another result completed before
    ("r-1", T, "r-2", T, True),  # ... or at the revocation
    ("r-1", T, "r-2", T + timedelta(seconds=1), False),  # a later result grants again
    (None, T, "r-2", T + timedelta(days=1), False),  # a manual grant revoked: later results grant
])
def test_a_revocation_bars_its_result_and_every_result_completed_before_it(
        conn, revoked_result, revoked_at, result, completed_at, bars):
    assert one(conn, "SELECT revocation_bars(%s::text, %s, %s, %s) IS TRUE",
               revoked_result, revoked_at, result, completed_at) is bars


# The statements that decide grants, each with arguments to plan it with.
GRANTING = {
    "upsert_results": {
        "ids": ["r-1"], "course_ids": [4711], "emails": ["anna@kommun.se"],
        "emails_normalized": ["anna@kommun.se"], "first_names": ["Anna"], "last_names": ["S"],
        "passed": [True], "scores": [90], "completed_at": [T], "changed_at": [T],
        "webhook_ids": ["w-1"], "sources": ["webhook"], "source": "webhook", "tz": STOCKHOLM,
    },
    "evaluate_results": {"ids": ["r-1"], "source": "webhook", "tz": STOCKHOLM},
    "grant_stored_results": {"course_id": 4711, "after_at": T, "after_id": "", "limit": 500,
                             "part": 0, "parts": 1, "source": "backfill", "tz": STOCKHOLM},
}


def plan_of(conn, name: str, args: dict) -> str:
    return "\n".join(r["QUERY PLAN"] for r in conn.execute(
        "EXPLAIN (VERBOSE, COSTS OFF) " + db.q(name), args, prepare=False))


def test_the_planner_inlines_every_rule_into_the_grant_statements(conn):
    """A rule made uninlinable (plpgsql, VOLATILE, STRICT) would run as a call per row."""
    statements = dict(GRANTING, classify_results={"ids": ["r-1"]},
                      refresh_course_status={"course_id": 4711})
    for name, args in statements.items():
        plan = plan_of(conn, name, args)
        assert "grants" in plan or "course_status_changes" in plan, plan  # rules are there
        for rule in ("valid_from(", "valid_to(", "course_status_at", "result_status", "grant_period",
                     "result_outcome(", "revocation_bars("):
            assert rule not in plan, f"{name}: {rule} is not inlined:\n{plan}"


def test_the_evidence_of_a_result_is_asked_per_candidate_not_joined(conn):
    """Whether a grant already rests on a result is asked once per candidate, a lookup by
    employee and competence whatever the planner believes of grants. Planned as an anti-join
    while a new link's competence had next to no grants (its backfill's start), that check read
    every grant of the competence for each candidate, and the backfill grew with its square."""
    for name, args in GRANTING.items():
        plan = plan_of(conn, name, args)
        assert " on public.grants v" in plan, f"{name}: no lookup of the evidence:\n{plan}"
        assert "Anti Join" not in plan, f"{name}: the evidence is joined:\n{plan}"
        assert "(v.employee_id = $" in plan and "(v.competence_id = $" in plan, (
            f"{name}: the evidence is not asked by employee and competence:\n{plan}")

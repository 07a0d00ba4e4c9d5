"""The expiring and coverage reports against a direct reading of the grants, through inserts,
renewals, revocations (both kinds), deletions, the days passing and the folding of the
summaries (docs/admin-api.md, "Reports" and "How the reports stay fast")."""
from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta

import pytest

from service.reports import reports
from tests.integration.api.conftest import add_employee, add_tree

pytestmark = pytest.mark.integration

TODAY = date(2026, 12, 1)
DAYS = [TODAY + timedelta(days=n) for n in (-400, -1, 0, 1, 30, 89, 90, 91, 365, 2000)]
FAR = date.max


def oracle(conn, day: date, within: int = 90) -> tuple[dict, list[int]]:
    """Coverage per competence and the expiring report's grant ids, read from the grants."""
    rows = conn.execute("SELECT id, employee_id, competence_id, valid_from, valid_to, revoked_at"
                        " FROM grants").fetchall()
    competences = [r["id"] for r in conn.execute(
        "SELECT id FROM competences WHERE kind = 'competence' ORDER BY name, id")]
    pairs: dict[tuple, list[dict]] = {}
    for g in rows:
        if g["revoked_at"] is None:
            pairs.setdefault((g["employee_id"], g["competence_id"]), []).append(g)
    cover = {c: {"active": 0, "expiring": 0, "expired_not_renewed": 0} for c in competences}
    listed = []
    for (_e, c), grants in pairs.items():
        last_end = max(g["valid_to"] or FAR for g in grants)
        active = [g for g in grants if g["valid_from"] <= day and (g["valid_to"] or FAR) >= day]
        ending = [g for g in active if g["valid_to"] is not None and g["valid_to"] <= day + timedelta(days=within)
                  and g["valid_to"] == last_end]
        cover[c]["active"] += bool(active)
        cover[c]["expiring"] += bool(ending) if within == 90 else 0
        cover[c]["expired_not_renewed"] += last_end < day
        listed += [(g["valid_to"], g["id"]) for g in ending]
    return cover, [gid for _end, gid in sorted(listed)]


def summary(conn, day: date, within: int = 90, competence_id=None) -> tuple[dict, list[int], int]:
    page = reports.coverage(conn, today=day, limit=1000, offset=0)
    cover = {r["competence_id"]: {k: r[k] for k in ("active", "expiring", "expired_not_renewed")}
             for r in page.items}
    expiring = reports.expiring(conn, today=day, within_days=within, competence_id=competence_id,
                                limit=100_000, offset=0)
    whole = list(reports.expiring(conn, today=day, within_days=within, competence_id=competence_id,
                                  limit=None, offset=0).items)
    assert [r["grant_id"] for r in whole] == [r["grant_id"] for r in expiring.items]
    return cover, [r["grant_id"] for r in expiring.items], expiring.total


def check(conn, days=DAYS):
    for day in days:
        want_cover, want_listed = oracle(conn, day)
        cover, listed, total = summary(conn, day)
        assert cover == want_cover, day
        assert listed == want_listed, day
        assert total == len(want_listed), day
    for within in (0, 7, 400):
        _c, want_listed = oracle(conn, days[0], within)
        _c, listed, total = summary(conn, days[0], within)
        assert (listed, total) == (want_listed, len(want_listed)), within


def periods(rng: random.Random, valid_days: int | None) -> list[tuple[date, date | None]]:
    """Grants of one employee and competence as the rules make them: periods that never overlap,
    renewed the day after the last one ends, or after a gap."""
    out = []
    start = TODAY - timedelta(days=rng.randrange(0, 1500))
    for _ in range(rng.randrange(0, 4)):
        if valid_days is None:
            return [(start, None)]
        end = start + timedelta(days=valid_days)
        out.append((start, end))
        start = end + timedelta(days=1 if rng.random() < 0.5 else rng.randrange(2, 400))
    return out


@pytest.fixture
def periods_world(conn):
    """A transaction in which grants are periods (several of a pair), rolled back at the end."""
    with conn.transaction(force_rollback=True):
        conn.execute("ALTER TABLE grants DROP CONSTRAINT IF EXISTS grants_employee_competence_key")
        yield conn


def _insert(conn, rows):
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source)"
            " VALUES (%s, %s, %s, %s, 'backfill')", rows)


def test_the_summaries_agree_with_the_grants_through_every_kind_of_change(periods_world):
    conn = periods_world
    rng = random.Random(17)
    tree = add_tree(conn, valid_days=365)
    comps = {tree["leaf"]: 365}
    for name, days in (("Brand", 730), ("Lyft", 60), ("Hygien", None), ("Tom", 365)):
        cid = conn.execute("INSERT INTO competences (parent_id, name, kind, default_valid_days)"
                           " VALUES (%s, %s, 'competence', %s) RETURNING id",
                           (tree["group"], name, days)).fetchone()["id"]
        comps[cid] = days
    empty = cid  # "Tom" holds no grants: it is listed with zeros
    employees = [add_employee(conn, f"e{i}@kommun.se") for i in range(60)]
    rows = [(e, c, vf, vt) for e in employees for c, days in comps.items() if c != empty
            for vf, vt in periods(rng, days)]
    conn.execute("INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source)"
                 " SELECT * , 'backfill' FROM unnest(%s::bigint[], %s::bigint[], %s::date[], %s::date[])",
                 ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]))
    # A grant that ends today and is active, one that begins tomorrow (upcoming), a pair whose
    # only grant was revoked.
    _insert(conn, [(employees[0], empty, TODAY - timedelta(days=10), TODAY),
                   (employees[1], empty, TODAY + timedelta(days=1), TODAY + timedelta(days=40))])
    check(conn)
    assert oracle(conn, TODAY)[0][empty] == {"active": 1, "expiring": 1, "expired_not_renewed": 0}

    ids = [r["id"] for r in conn.execute("SELECT id FROM grants ORDER BY id")]
    # Revoked as today: the row deleted (and remembered elsewhere).
    conn.execute("DELETE FROM grants WHERE id = ANY(%s)", (rng.sample(ids, 25),))
    check(conn)
    # Revoked as periods: the row stays with revoked_at set.
    kept = [r["id"] for r in conn.execute("SELECT id FROM grants WHERE revoked_at IS NULL ORDER BY id")]
    conn.execute("UPDATE grants SET revoked_at = now(), revoked_reason = 'fel', revoked_by = 'test'"
                 " WHERE id = ANY(%s)", (rng.sample(kept, 25),))
    check(conn)
    # Renewals: the next period, from the day after each latest grant ends.
    conn.execute("""
        INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source)
        SELECT DISTINCT ON (employee_id, competence_id) employee_id, competence_id,
               valid_to + 1, valid_to + 366, 'webhook'
          FROM grants WHERE revoked_at IS NULL AND valid_to IS NOT NULL
         ORDER BY employee_id, competence_id, coalesce(valid_to, 'infinity') DESC""")
    check(conn)
    # An update of the dates themselves (the integration never does, but nothing may drift).
    conn.execute("UPDATE grants SET valid_to = valid_to + 5 WHERE mod(id, 7) = 0 AND valid_to IS NOT NULL"
                 " AND NOT EXISTS (SELECT 1 FROM grants n WHERE n.employee_id = grants.employee_id"
                 " AND n.competence_id = grants.competence_id AND n.valid_from > grants.valid_from)")
    check(conn)
    # A deleted employee and a deleted competence take their grants with them.
    conn.execute("DELETE FROM employees WHERE id = %s", (employees[5],))
    conn.execute("DELETE FROM competences WHERE name = 'Lyft'")
    check(conn)
    # Folding keeps every count from its cutoff on, and the tables small.
    reports.compact_coverage(conn, today=TODAY)
    check(conn, [d for d in DAYS if d >= TODAY])
    conn.execute("DELETE FROM grants WHERE id IN (SELECT id FROM grants ORDER BY id DESC LIMIT 30)")
    _insert(conn, [(employees[7], tree["leaf"], TODAY + timedelta(days=900), TODAY + timedelta(days=1265))])
    check(conn, [d for d in DAYS if d >= TODAY])
    before = conn.execute("SELECT count(*) AS n FROM coverage_latest_grants").fetchone()["n"]
    reports.compact_coverage(conn, today=TODAY + timedelta(days=365))
    after = conn.execute("SELECT count(*) AS n FROM coverage_latest_grants").fetchone()["n"]
    assert after < before
    check(conn, [d for d in DAYS if d >= TODAY + timedelta(days=365)])
    # Emptied (TRUNCATE fires no row triggers): the summaries are emptied too.
    conn.execute("TRUNCATE grants, grant_notices")  # the expiry notices refer to grants
    assert conn.execute("SELECT (SELECT count(*) FROM coverage_active_edges)"
                        " + (SELECT count(*) FROM coverage_latest_grants) AS n").fetchone()["n"] == 0


def test_the_reports_over_http(conn, api):
    tree = add_tree(conn, valid_days=365)
    leaf = tree["leaf"]
    other = conn.execute("INSERT INTO competences (parent_id, name, kind, default_valid_days)"
                         " VALUES (%s, 'Brand', 'competence', 730) RETURNING id", (tree["group"],)).fetchone()["id"]
    today = datetime.now(reports_tz()).date()
    anna = conn.execute("INSERT INTO employees (email, email_normalized, first_name, last_name)"
                        " VALUES ('Anna@kommun.se', 'anna@kommun.se', 'Anna', 'Andersson') RETURNING id").fetchone()["id"]
    eva = add_employee(conn, "eva@kommun.se")
    bo = add_employee(conn, "bo@kommun.se")
    add = "INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source) VALUES (%s, %s, %s, %s, 'webhook') RETURNING id"
    g_anna = conn.execute(add, (anna, leaf, today - timedelta(days=300), today + timedelta(days=65))).fetchone()["id"]
    g_eva = conn.execute(add, (eva, leaf, today - timedelta(days=340), today + timedelta(days=25))).fetchone()["id"]
    conn.execute(add, (bo, leaf, today - timedelta(days=500), today - timedelta(days=135)))  # expired
    g_bo = conn.execute(add, (bo, other, today - timedelta(days=700), today + timedelta(days=30))).fetchone()["id"]
    r = api.get("/api/v1/reports/expiring")
    assert r.status_code == 200
    rows = r.get_json()
    assert [g["grant_id"] for g in rows] == [g_eva, g_bo, g_anna]  # soonest first
    assert rows[2] == {"grant_id": g_anna, "employee_id": anna, "employee_email": "Anna@kommun.se",
                       "employee_name": "Anna Andersson", "competence_id": leaf, "competence_name": "HLR",
                       "valid_from": (today - timedelta(days=300)).isoformat(),
                       "valid_to": (today + timedelta(days=65)).isoformat()}
    assert rows[0]["employee_name"] is None
    assert json.loads(r.headers["X-Pagination"])["total"] == 3
    assert [g["grant_id"] for g in api.get("/api/v1/reports/expiring?within_days=30").get_json()] == [g_eva, g_bo]
    one = api.get(f"/api/v1/reports/expiring?competence_id={other}")
    assert [g["grant_id"] for g in one.get_json()] == [g_bo]
    assert json.loads(one.headers["X-Pagination"])["total"] == 1
    assert api.get("/api/v1/reports/expiring?within_days=-1").status_code == 422
    assert api.get("/api/v1/reports/expiring?days=5").status_code == 422
    coverage = api.get("/api/v1/reports/coverage").get_json()
    assert coverage == [
        {"competence_id": other, "competence_name": "Brand", "active": 1, "expiring": 1, "expired_not_renewed": 0},
        {"competence_id": leaf, "competence_name": "HLR", "active": 2, "expiring": 2, "expired_not_renewed": 1},
    ]
    # Revoking Eva's grant through the API takes it out of both reports.
    assert api.delete(f"/api/v1/grants/{g_eva}", json={"reason": "fel person"}).status_code == 200
    assert [g["grant_id"] for g in api.get("/api/v1/reports/expiring").get_json()] == [g_bo, g_anna]
    assert api.get("/api/v1/reports/coverage").get_json()[1]["active"] == 1
    # Both as files.
    body = api.get("/api/v1/reports/expiring?format=csv").data.decode("utf-8-sig").split("\r\n")
    assert body[0] == "grant_id;employee_id;employee_email;employee_name;competence_id;competence_name;valid_from;valid_to"
    assert len(body) == 4 and body[-1] == ""
    assert api.get("/api/v1/reports/coverage", headers={"Accept": "text/csv"}).data.decode("utf-8-sig").startswith(
        "competence_id;competence_name;active;expiring;expired_not_renewed\r\n")
    # Deleting a competence deletes its grants, and it leaves the coverage report.
    assert api.delete(f"/api/v1/competences/{other}").status_code == 200
    assert [c["competence_id"] for c in api.get("/api/v1/reports/coverage").get_json()] == [leaf]
    assert [g["grant_id"] for g in api.get("/api/v1/reports/expiring").get_json()] == [g_anna]


def reports_tz():
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Stockholm")

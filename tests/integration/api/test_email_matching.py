"""Rule 2 on the webhook path and the unmatched hand-over (docs/rules.md): an address that
only looks like an employee's never earns that employee's grants, on real RabbitMQ and
PostgreSQL."""
from __future__ import annotations

import json
import unicodedata
from datetime import datetime, timezone

import pytest

from service.grants.pipeline import ResultRecord, apply_results
from tests.conftest import completed_event, dumps, sign, wait_for
from tests.integration.test_pipeline import add_employee, seed_links

pytestmark = pytest.mark.integration

KELVIN = "\N{KELVIN SIGN}"

# Each impostor address beside the employee it must not match (docs/rules.md, rule 2's examples).
IMPOSTORS = {
    "r-strasse": ("strasse@kommun.se", "straße@kommun.se"),
    "r-long-s": ("ſven@kommun.se", "sven@kommun.se"),
    "r-ligature": ("ﬁlip@kommun.se", "filip@kommun.se"),
    "r-kelvin": (f"{KELVIN}alle@kommun.se", "kalle@kommun.se"),
    "r-fullwidth": ("ａｎｎａ@kommun.se", "anna@kommun.se"),
    "r-zero-width": ("ma\u200bria@kommun.se", "maria@kommun.se"),
    "r-cyrillic": ("\u0435va@kommun.se", "eva@kommun.se"),  # Cyrillic е for Latin e
    "r-dotted-i": ("\u0130da@kommun.se", "ida@kommun.se"),
}
# The same address in another case or form: matches.
SAME = {
    "r-ring": ("ÅSA@Kommun.se", "åsa@kommun.se"),
    "r-umlaut": ("Öberg@kommun.se", "öberg@kommun.se"),
    "r-trimmed": ("\t Lena.Ek@Kommun.SE  ", "lena.ek@kommun.se"),
    "r-decomposed": (unicodedata.normalize("NFD", "Åke.Öst@kommun.se"), "åke.öst@kommun.se"),
    "r-eszett": ("Straße@Kommun.se", "straße@kommun.se"),
}


def statuses(conn) -> dict[str, str]:
    return {r["id"]: r["status"] for r in conn.execute("SELECT id, status FROM results")}


def granted_to(conn) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for r in conn.execute("SELECT result_id, employee_id FROM grants"):
        out.setdefault(r["result_id"], set()).add(r["employee_id"])
    return out


def test_signed_webhooks_from_look_alike_addresses_stay_unmatched(conn, client, run_worker):
    seed_links(conn)
    staff = {email: add_employee(conn, email)
             for email in {theirs for _, theirs in (*IMPOSTORS.values(), *SAME.values())}}
    run_worker()
    for rid, (email, _) in {**IMPOSTORS, **SAME}.items():
        raw = dumps(completed_event(rid, email))
        assert client.post("/webhooks/infocaption", data=raw, headers=sign(raw)).status_code == 202, rid
    seen = wait_for(lambda: len(s := statuses(conn)) == len(IMPOSTORS) + len(SAME) and s,
                    message="every result processed")

    assert {rid: seen[rid] for rid in IMPOSTORS} == {rid: "unmatched" for rid in IMPOSTORS}
    assert {rid: seen[rid] for rid in SAME} == {rid: "granted" for rid in SAME}
    assert granted_to(conn) == {rid: {staff[theirs]} for rid, (_, theirs) in SAME.items()}


def keep_unmatched(conn, result_id: str, email: str) -> None:
    record = ResultRecord(
        id=result_id, course_id=4711, course_name="HLR vuxen", guide_type=14, email=email,
        first_name=None, last_name=None, passed=True, score=90.0,
        completed_at=datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc))
    assert apply_results(conn, [record], source="webhook", tz="Europe/Stockholm").statuses == {
        result_id: "unmatched"}


def test_a_new_employee_is_not_handed_an_impostors_kept_results(conn, api):
    seed_links(conn)
    for rid, (email, _) in IMPOSTORS.items():
        keep_unmatched(conn, rid, email)
    keep_unmatched(conn, "r-eszett", "STRAßE@kommun.se")
    keep_unmatched(conn, "r-decomposed", unicodedata.normalize("NFD", "Åke.Öst@kommun.se"))

    people = [{"email": theirs} for _, theirs in IMPOSTORS.values()] + [{"email": "Åke.Öst@kommun.se"}]
    r = api.post("/api/v1/employees", json=people)
    assert r.status_code == 201, r.get_json()
    ids = {e["email"]: e["id"] for e in r.get_json()}
    # only the two results of the same addresses were handed over
    assert granted_to(conn) == {"r-eszett": {ids["straße@kommun.se"]},
                                "r-decomposed": {ids["Åke.Öst@kommun.se"]}}
    assert {rid: statuses(conn)[rid] for rid in IMPOSTORS} == {rid: "unmatched" for rid in IMPOSTORS}

    # correcting an email to the one an impostor used hands nothing over either
    eva = ids["eva@kommun.se"]
    assert api.patch(f"/api/v1/employees/{eva}", json={"email": "eva.lind@kommun.se"}).status_code == 200
    assert api.patch(f"/api/v1/employees/{eva}", json={"email": "eva@kommun.se"}).status_code == 200
    assert "r-cyrillic" not in granted_to(conn)

    # the unmatched report keeps every impostor address apart from the employees, its odd
    # character spelled out
    report = {u["email"] for u in api.get("/api/v1/unmatched?page_size=100").get_json()}
    assert len(report) == len(IMPOSTORS)
    assert "strasse@kommun.se" in report
    assert any("\\u212aalle@kommun.se" in email for email in report)
    assert not report & {theirs for _, theirs in IMPOSTORS.values()}


@pytest.mark.parametrize("email", [f"{KELVIN}alle@kommun.se", "ſven@kommun.se", "ﬁlip@kommun.se",
                                   "ａｎｎａ@kommun.se", "ma\u200bria@kommun.se", "\u0435va@kommun.se"])
def test_an_employee_with_an_address_that_matches_nobody_is_refused(conn, api, email):
    r = api.post("/api/v1/employees", json={"email": email})
    assert r.status_code == 422, r.get_json()
    assert "email" in json.dumps(r.get_json()["errors"])
    anna = api.post("/api/v1/employees", json={"email": "anna@kommun.se"}).get_json()["id"]
    r = api.patch(f"/api/v1/employees/{anna}", json={"email": email})
    assert r.status_code == 422, r.get_json()
    assert conn.execute("SELECT count(*) AS n FROM employees").fetchone()["n"] == 1

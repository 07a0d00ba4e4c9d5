"""Rule 2 on the backfill path (docs/rules.md): records read from the InfoCaption API (the
simulator over real HTTP) whose address only looks like an employee's stay unmatched; the same
address in another case or form is granted. Real PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from service.demo.simulator import generate
from tests.integration.api.test_email_matching import IMPOSTORS, SAME
from tests.integration.infocaption.conftest import add_link, client_for, settings_for
from tests.integration.test_pipeline import add_employee
from workers.backfill import Backfill

pytestmark = pytest.mark.integration

COURSE_ID = 4711


def test_a_backfill_grants_no_look_alike_address(conn, settings, pool, make_sim):
    data = generate(3, courses=1, results_per_course=5, employees=5)
    sim = make_sim(data)
    link = add_link(conn, data.courses[COURSE_ID])
    staff = {email: add_employee(conn, email)
             for email in {theirs for _, theirs in (*IMPOSTORS.values(), *SAME.values())}}
    when = datetime.now(timezone.utc) - timedelta(days=3)
    for rid, (email, _) in {**IMPOSTORS, **SAME}.items():
        sim.add_result(COURSE_ID, email, result_id=rid, completed_at=when, send_webhook=False)

    row = Backfill(settings_for(settings, sim), pool, client_for(sim), page_size=7).run(link["id"])
    assert row["backfill_state"] == "done"

    ids = list(IMPOSTORS) + list(SAME)
    status = {r["id"]: r["status"] for r in conn.execute(
        "SELECT id, status FROM results WHERE id = ANY(%s)", (ids,))}
    assert {rid: status.get(rid) for rid in IMPOSTORS} == {rid: "unmatched" for rid in IMPOSTORS}
    assert {rid: status.get(rid) for rid in SAME} == {rid: "granted" for rid in SAME}
    granted = {(r["result_id"], r["employee_id"]) for r in conn.execute(
        "SELECT result_id, employee_id FROM grants WHERE result_id = ANY(%s)", (ids,))}
    assert granted == {(rid, staff[theirs]) for rid, (_, theirs) in SAME.items()}

"""Model check: a random stream of events through the service and through an independent
reference model of the rules (tests/model.py) gives identical grants."""
from __future__ import annotations

import os

import pytest

from service.catalog import competences as catalog_competences

from service.catalog import links as catalog_links

from service.people import employees as people_employees
from service.grants import pipeline
from service.people.email import normalize_email
from tests.model import Model, stream

pytestmark = pytest.mark.integration
TZ = "Europe/Stockholm"


def run_model_check(conn, n: int, seed: int, competence_offset: int = 0) -> dict:
    """Drive `conn`'s tenant with the stream and compare; the service's competence ids are the
    stream's plus `competence_offset` (ids are the deployment's, two tenants need their own)."""
    model = Model()
    off = competence_offset
    link_ids: dict[tuple[int, int], int] = {}
    counts = {"events": 0, "batches": 0, "employees": 0, "links": 0, "unlinks": 0, "competences_deleted": 0}
    for kind, data in stream(seed, n):
        with conn.transaction():
            if kind == "setup":
                main = conn.execute("INSERT INTO competences (name, kind) VALUES ('M', 'main_group') RETURNING id").fetchone()["id"]
                group = conn.execute("INSERT INTO competences (parent_id, name, kind) VALUES (%s, 'G', 'group') RETURNING id", (main,)).fetchone()["id"]
                for k, (days, window) in data["competences"].items():
                    conn.execute(
                        "INSERT INTO competences (id, parent_id, name, kind, default_valid_days, renewal_window_days)"
                        " VALUES (%s, %s, %s, 'competence', %s, %s)", (k + off, group, f"K{k}", days, window))
                    model.competences[k] = (days, window)
                for c in data["courses"]:
                    conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (%s, 'Kurs', 14)", (c,))
                people_employees.create_employees(conn, [{"email": e} for e in data["employees"]], actor="model", tz=TZ)
                model.employees.update(normalize_email(e) for e in data["employees"])
                for c, k in data["links"]:
                    link_ids[(c, k)] = catalog_links.create_link(conn, c, k + off, actor="model")["id"]
                    model.links.add((c, k))
            elif kind == "results":
                pipeline.process_events(conn, data, tz=TZ)
                model.results_batch(data)
                counts["events"] += len(data)
                counts["batches"] += 1
            elif kind == "employee":
                people_employees.create_employees(conn, [{"email": data}], actor="model", tz=TZ)
                model.employee_created(data)
                counts["employees"] += 1
            elif kind == "link":
                link_ids[data] = catalog_links.create_link(conn, data[0], data[1] + off, actor="model")["id"]
                # what the backfill does with the results already stored for the course
                ids = [r["id"] for r in conn.execute("SELECT id FROM results WHERE course_id = %s", (data[0],)).fetchall()]
                pipeline.evaluate_results(conn, ids, source="backfill", tz=TZ)
                model.link_created(*data)
                counts["links"] += 1
            elif kind == "unlink":
                catalog_links.delete_link(conn, link_ids.pop(data), actor="model")
                model.link_deleted(*data)
                counts["unlinks"] += 1
            elif kind == "delete_competence":
                catalog_competences.delete_competence(conn, data + off, actor="model")
                link_ids = {p: i for p, i in link_ids.items() if p[1] != data}
                model.competence_deleted(data)
                counts["competences_deleted"] += 1
    service: dict[tuple[str, int], list] = {}
    for r in conn.execute(
            "SELECT e.email_normalized, g.competence_id, g.valid_from, g.valid_to, g.result_id"
            " FROM grants g JOIN employees e ON e.id = g.employee_id ORDER BY g.valid_from").fetchall():
        service.setdefault((r["email_normalized"], r["competence_id"] - off), []).append(
            (r["valid_from"], r["valid_to"], r["result_id"]))
    periods = sum(len(p) for p in service.values())
    unmatched = {r["id"] for r in conn.execute("SELECT id FROM results WHERE status = 'unmatched'").fetchall()}
    model_unmatched = {r.id for r in model.results.values() if r.status == "unmatched"}
    counts.update(grants=len(service), model_grants=len(model.grants), periods=periods,
                  model_periods=sum(len(p) for p in model.grants.values()),
                  later_periods=sum(len(p) - 1 for p in service.values()),
                  missing=len(set(model.grants) - set(service)), extra=len(set(service) - set(model.grants)),
                  different=sum(1 for k in set(model.grants) & set(service) if model.grants[k] != service[k]),
                  unmatched=len(unmatched), model_unmatched=len(model_unmatched))
    assert service == model.grants, counts
    assert unmatched == model_unmatched, counts
    return counts


def test_service_and_reference_model_agree_on_every_grant(database_url):
    from service.platform import db
    from tests.conftest import DOMAIN_TABLES

    n = int(os.environ.get("MODEL_CHECK_EVENTS", "20000"))
    with db.connect(database_url) as conn:
        conn.autocommit = True
        conn.execute("TRUNCATE " + ", ".join(DOMAIN_TABLES) + " RESTART IDENTITY CASCADE")
        counts = run_model_check(conn, n, seed=int(os.environ.get("MODEL_CHECK_SEED", "7")))
    assert counts["events"] >= n * 0.8 and counts["grants"] > 1000 and counts["unmatched"] > 100
    assert counts["later_periods"] > 100  # renewals and new periods after expiry happen
    assert counts["links"] and counts["unlinks"] and counts["competences_deleted"] and counts["employees"]
    print("model check:", counts)

"""Employees: create one, import many, correct an email; kept unmatched results get granted."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from service.grants.pipeline import ResultRecord, apply_results
from tests.integration.api.conftest import add_course, add_employee, add_link, add_tree, audit_rows

pytestmark = pytest.mark.integration


def keep_unmatched(conn, result_id: str, email: str, course_id: int = 4711) -> None:
    """A passed result of an email nobody has yet: kept as unmatched."""
    record = ResultRecord(
        id=result_id, course_id=course_id, course_name="HLR vuxen", guide_type=14, email=email,
        first_name=None, last_name=None, passed=True, score=90.0,
        completed_at=datetime(2026, 11, 29, 23, 30, tzinfo=timezone.utc))
    out = apply_results(conn, [record], source="webhook", tz="Europe/Stockholm")
    assert out.statuses == {result_id: "unmatched"}


def grants(conn):
    return conn.execute("SELECT employee_id, competence_id, valid_from, source, result_id FROM grants"
                        " ORDER BY id").fetchall()


def test_creating_an_employee_grants_their_unmatched_results(conn, api):
    add_course(conn, 4711)
    tree = add_tree(conn)
    add_link(conn, 4711, tree["leaf"])
    keep_unmatched(conn, "r-1", "Nobody.Yet@Kommun.se")
    assert api.get("/api/v1/unmatched").get_json()[0]["email"] == "nobody.yet@kommun.se"

    r = api.post("/api/v1/employees", json={"email": "  nobody.yet@KOMMUN.se ", "first_name": "No",
                                            "last_name": "Body"})
    assert r.status_code == 201, r.get_json()
    emp = r.get_json()
    assert (emp["email"], emp["first_name"], emp["last_name"]) == ("nobody.yet@KOMMUN.se", "No", "Body")
    assert grants(conn) == [{"employee_id": emp["id"], "competence_id": tree["leaf"],
                             "valid_from": date(2026, 11, 30), "source": "employee_update", "result_id": "r-1"}]
    assert api.get("/api/v1/unmatched").get_json() == []
    [row] = audit_rows(conn, "employee.create")
    assert row["after"]["granted"] == 1 and row["actor"] == "admin"


def test_bulk_import_is_a_list_in_and_a_list_out(conn, api):
    add_course(conn, 4711)
    tree = add_tree(conn)
    add_link(conn, 4711, tree["leaf"])
    keep_unmatched(conn, "r-2", "b@kommun.se")
    people = [{"email": f"{c}@kommun.se"} for c in "abc"]
    r = api.post("/api/v1/employees", json=people)
    assert r.status_code == 201
    assert [e["email"] for e in r.get_json()] == ["a@kommun.se", "b@kommun.se", "c@kommun.se"]
    assert [g["result_id"] for g in grants(conn)] == ["r-2"]
    assert len(audit_rows(conn, "employee.import")) == 1
    listed = api.get("/api/v1/employees").get_json()
    assert [e["email"] for e in listed] == ["a@kommun.se", "b@kommun.se", "c@kommun.se"]
    assert [e["email"] for e in api.get("/api/v1/employees?email=B@Kommun.se").get_json()] == ["b@kommun.se"]


def test_duplicate_emails_are_409_naming_them_and_nothing_is_imported(conn, api):
    existing = add_employee(conn, "anna@kommun.se")
    r = api.post("/api/v1/employees", json=[{"email": "new@kommun.se"}, {"email": " ANNA@kommun.se"}])
    assert r.status_code == 409
    body = r.get_json()
    assert "anna@kommun.se" in body["message"]
    assert body["errors"] == {"existing": [{"email": "anna@kommun.se", "employee_id": existing}]}

    r = api.post("/api/v1/employees", json=[{"email": "Eva@kommun.se"}, {"email": "x@kommun.se"},
                                            {"email": "eva@KOMMUN.se "}])
    assert r.status_code == 409
    assert r.get_json()["errors"] == {"duplicates": [{"email": "eva@kommun.se", "indexes": [0, 2]}]}
    assert conn.execute("SELECT count(*) AS n FROM employees").fetchone()["n"] == 1

    assert api.post("/api/v1/employees", json={"email": "anna@kommun.se"}).status_code == 409


@pytest.mark.parametrize("body", [
    {"email": "not-an-email"}, {"email": "a b@kommun.se"}, {"first_name": "x"},
    {"email": "a@kommun.se", "phone": "1"}, [], [{"email": "a@kommun.se"}, {"mail": "b@kommun.se"}],
    "a@kommun.se", {"email": "a@kommun.se\x00"},
])
def test_malformed_employees_are_422(conn, api, body):
    r = api.post("/api/v1/employees", json=body)
    assert r.status_code == 422, r.get_json()
    assert set(r.get_json()) == {"code", "message", "errors"}


def test_an_import_that_is_not_json_is_400(conn, api):
    r = api.post("/api/v1/employees", data="email=a@kommun.se")
    assert r.status_code == 400
    assert r.get_json()["code"] == 400


def test_an_import_may_be_larger_than_a_webhook(conn, api):
    people = [{"email": f"person.number.{i:05d}@kommun.example.se", "first_name": "Förnamn",
               "last_name": "Efternamn"} for i in range(1500)]
    r = api.post("/api/v1/employees", json=people)
    assert r.status_code == 201
    assert len(r.get_json()) == 1500


def test_correcting_an_email_grants_its_unmatched_results(conn, api):
    add_course(conn, 4711)
    tree = add_tree(conn)
    add_link(conn, 4711, tree["leaf"])
    emp = add_employee(conn, "anna.andersson@kommun.se")
    keep_unmatched(conn, "r-4", "a.andersson@kommun.se")  # her address at InfoCaption
    assert grants(conn) == []

    r = api.patch(f"/api/v1/employees/{emp}", json={"email": "A.Andersson@kommun.se"})
    assert r.status_code == 200
    assert r.get_json()["email"] == "A.Andersson@kommun.se"
    assert grants(conn) == [{"employee_id": emp, "competence_id": tree["leaf"], "valid_from": date(2026, 11, 30),
                             "source": "employee_update", "result_id": "r-4"}]
    assert conn.execute("SELECT status FROM results WHERE id = 'r-4'").fetchone()["status"] == "granted"
    [row] = audit_rows(conn, "employee.update")
    assert row["before"] == {"email": "anna.andersson@kommun.se"}
    assert row["after"]["email"] == "A.Andersson@kommun.se"


def test_patch_errors(conn, api):
    anna = add_employee(conn, "anna@kommun.se")
    eva = add_employee(conn, "eva@kommun.se")
    r = api.patch(f"/api/v1/employees/{eva}", json={"email": "ANNA@kommun.se"})
    assert r.status_code == 409
    assert r.get_json()["errors"] == {"existing": [{"email": "anna@kommun.se", "employee_id": anna}]}
    assert api.patch("/api/v1/employees/999", json={"first_name": "x"}).status_code == 404
    assert api.patch(f"/api/v1/employees/{eva}", json={"email": "nope"}).status_code == 422
    assert api.patch(f"/api/v1/employees/{eva}", json={"id": 3}).status_code == 422
    r = api.patch(f"/api/v1/employees/{eva}", json={"first_name": "Eva", "last_name": None})
    assert r.status_code == 200 and r.get_json()["first_name"] == "Eva"

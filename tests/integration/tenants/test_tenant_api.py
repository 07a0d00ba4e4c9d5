"""Two tenants through the web process: each webhook URL is verified with its own tenant's
secrets, each token sees only its tenant and gets 404 for the other's ids, and a platform token
reads every tenant's ops figures without personal data and nothing else (docs/tenants.md)."""
from __future__ import annotations

import json

import pytest

from service.access import tokens
from service.access.auth import INTEGRATIONS, SETTINGS
from service.platform import db, tenancy
from service.platform.metrics import WEBHOOKS
from tests.conftest import SECRET, completed_event, dumps, sign, wait_for
from tests.integration.api.conftest import (Api, add_course, add_employee, add_grant, add_link,
                                            add_tree)
from tests.integration.tenants.conftest import SECOND, SECOND_SECRET

pytestmark = pytest.mark.integration
BOTH = [INTEGRATIONS, SETTINGS]


@pytest.fixture
def two(conn, database_url, second_tenant):
    """The same course id and the same email in both tenants, each with a grant and a token."""
    made = {}
    for slug, tenant_id in (("default", tenancy.DEFAULT_ID), (SECOND, second_tenant.id)):
        with db.tenant_connection(database_url, tenant_id, autocommit=True) as c:
            add_course(c, 4711, name=f"HLR {slug}")
            tree = add_tree(c)
            employee = add_employee(c, "anna.andersson@kommun.se")
            made[slug] = {
                "id": tenant_id, "tree": tree, "employee": employee,
                "link": add_link(c, 4711, tree["leaf"]),
                "grant": add_grant(c, employee, tree["leaf"]),
                "token": tokens.create(c, "hr", BOTH, actor="test"),
            }
    return made


def test_each_token_sees_only_its_tenant_and_404_for_the_others_ids(app, two, conn):
    client = app.test_client()
    a, b = Api(client, two["default"]["token"]), Api(client, two[SECOND]["token"])
    assert [c["name"] for c in a.get("/api/v1/courses").get_json()] == ["HLR default"]
    assert [c["name"] for c in b.get("/api/v1/courses").get_json()] == [f"HLR {SECOND}"]
    for api, mine in ((a, two["default"]), (b, two[SECOND])):
        employees = api.get("/api/v1/employees").get_json()
        assert [e["id"] for e in employees] == [mine["employee"]]
        assert [g["id"] for g in api.get("/api/v1/grants").get_json()] == [mine["grant"]]
        assert [k["id"] for k in api.get("/api/v1/links").get_json()] == [mine["link"]]
        tree = {c["id"] for c in api.get("/api/v1/competences").get_json()}
        assert tree == set(mine["tree"].values())

    theirs = two[SECOND]
    # The other tenant's ids do not exist for this token: 404, never 403.
    assert a.get(f"/api/v1/links/{theirs['link']}").status_code == 404
    assert a.get(f"/api/v1/competences/{theirs['tree']['leaf']}").status_code == 404
    assert a.get(f"/api/v1/employees/{theirs['employee']}/results").status_code == 404
    assert a.patch(f"/api/v1/employees/{theirs['employee']}",
                   json={"email": "x@kommun.se"}).status_code == 404
    assert a.delete(f"/api/v1/grants/{theirs['grant']}", json={"reason": "x"}).status_code == 404
    assert a.delete(f"/api/v1/links/{theirs['link']}").status_code == 404
    # Named in a body, another tenant's id is answered as an id that never existed.
    taken = a.post("/api/v1/links", json={"course_id": 4711, "competence_id": theirs["tree"]["leaf"]})
    never = a.post("/api/v1/links", json={"course_id": 4711, "competence_id": 987654})
    assert taken.status_code == never.status_code in (404, 422)
    assert taken.get_json()["message"].replace(str(theirs["tree"]["leaf"]), "N") == \
        never.get_json()["message"].replace("987654", "N")
    # Nothing of the other tenant changed; the refusals were not audited there either.
    row = conn.execute("SELECT count(*) AS n FROM links WHERE id = %s", (theirs["link"],)).fetchone()
    assert row["n"] == 1
    assert conn.execute("SELECT revoked_at FROM grants WHERE id = %s",
                        (theirs["grant"],)).fetchone()["revoked_at"] is None
    # Each audit log holds its own tenant's changes only.
    assert a.post("/api/v1/competences", json={"name": "Ny", "kind": "main_group"}).status_code == 201
    a_audit = a.get("/api/v1/audit").get_json()
    b_audit = b.get("/api/v1/audit").get_json()
    assert any(r["action"] == "competence.create" for r in a_audit)
    assert not any(r["action"] == "competence.create" for r in b_audit)
    audit_tenants = {r["tenant_id"] for r in conn.execute(
        "SELECT tenant_id FROM audit_log WHERE action = 'competence.create'").fetchall()}
    assert audit_tenants == {1}


def test_a_webhook_is_verified_with_its_tenants_secrets_only(app, two, conn, run_worker):
    client = app.test_client()
    body = dumps(completed_event("r-same-id", "anna.andersson@kommun.se"))
    # The other tenant's secret at either URL: 401.
    assert client.post(f"/webhooks/infocaption/{SECOND}", data=body,
                       headers=sign(body, secret=SECRET)).status_code == 401
    assert client.post("/webhooks/infocaption", data=body,
                       headers=sign(body, secret=SECOND_SECRET)).status_code == 401
    # Unknown and inactive tenants: 404, and kept nowhere.
    kept = conn.execute("SELECT count(*) AS n FROM rejected_webhooks").fetchone()["n"]
    assert client.post("/webhooks/infocaption/nobody", data=body,
                       headers=sign(body, secret=SECRET)).status_code == 404
    conn.execute("UPDATE tenants SET active = false WHERE slug = %s", (SECOND,))
    app.extensions["competence_bridge.tenants"].ttl = 0  # read the change at once
    assert client.post(f"/webhooks/infocaption/{SECOND}", data=body,
                       headers=sign(body, secret=SECOND_SECRET)).status_code == 404
    assert conn.execute("SELECT count(*) AS n FROM rejected_webhooks").fetchone()["n"] == kept
    conn.execute("UPDATE tenants SET active = true WHERE slug = %s", (SECOND,))

    # Each tenant's own signature at its own URL: the same result id, course and email
    # become one result in each tenant, of that tenant's employee (who holds the grant).
    run_worker()
    counted = {t: WEBHOOKS.labels(outcome="accepted", type="course.completed", tenant=t)
               for t in ("default", SECOND)}
    before = {t: c._value.get() for t, c in counted.items()}
    for url, secret in (("/webhooks/infocaption", SECRET),
                        (f"/webhooks/infocaption/{SECOND}", SECOND_SECRET)):
        assert client.post(url, data=body, headers=sign(body, secret=secret)).status_code == 202
    assert {t: c._value.get() - before[t] for t, c in counted.items()} == {"default": 1, SECOND: 1}
    unknown = WEBHOOKS.labels(outcome="unknown_tenant", type="-", tenant="-")._value.get()
    assert unknown >= 1  # counted without the caller's slug as a label
    rows = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(conn.execute(
        "SELECT tenant_id, status, employee_id FROM results WHERE id = 'r-same-id'"
        " ORDER BY tenant_id").fetchall()), message="a result in each tenant")
    assert [(r["tenant_id"], r["status"]) for r in rows] == [(1, "granted"), (two[SECOND]["id"], "granted")]
    assert [r["employee_id"] for r in rows] == [two["default"]["employee"], two[SECOND]["employee"]]


def test_a_platform_token_reads_ops_of_every_tenant_and_nothing_else(app, two, conn,
                                                                     database_url):
    with db.connect(database_url, autocommit=True) as owner:
        platform = Api(app.test_client(), tokens.create(owner, "ops", [], platform=True))
    for tenant_id in (1, two[SECOND]["id"]):
        with db.tenant_connection(database_url, tenant_id, autocommit=True) as c:
            c.execute("INSERT INTO dead_letters (queue, event_type, payload, error) VALUES"
                      " ('cb.events', 'course.completed', %s, 'ValueError: anna@kommun.se')",
                      (json.dumps({"result": {"email": "anna@kommun.se"}}),))
    answer = platform.get("/api/v1/platform/ops")
    assert answer.status_code == 200
    seen = {t["tenant"]: t for t in answer.get_json()["tenants"]}
    assert set(seen) == {"default", SECOND}
    assert all(t["dead_letters_pending"] == 1 for t in seen.values())
    assert "anna" not in answer.get_data(as_text=True)  # no payloads, no error texts
    assert seen["default"]["dead_letters"][0]["error_kind"] == "ValueError"
    listed = platform.get("/api/v1/platform/tenants").get_json()["items"]
    assert {t["slug"] for t in listed} == {"default", SECOND}
    assert "secret" not in json.dumps(listed)
    # Nothing of a tenant's own: 403; and a tenant's token cannot use the platform's endpoints.
    for path in ("/api/v1/courses", "/api/v1/employees", "/api/v1/grants", "/api/v1/ops/queues"):
        assert platform.get(path).status_code == 403, path
    tenant_token = Api(app.test_client(), two["default"]["token"])
    assert tenant_token.get("/api/v1/platform/tenants").status_code == 403
    # It creates tenants; the answer never carries the secrets.
    made = platform.post("/api/v1/platform/tenants", json={
        "slug": "kommun-c", "name": "Kommun C", "infocaption_base_url": "https://c.example",
        "client_id": "c", "secrets": {"client_secret": "c-secret", "webhook_secrets": [SECOND_SECRET]}})
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["slug"] == "kommun-c" and "c-secret" not in made.get_data(as_text=True)
    stored = conn.execute("SELECT secrets FROM tenants WHERE slug = 'kommun-c'").fetchone()["secrets"]
    assert "c-secret" not in stored and SECOND_SECRET not in stored  # encrypted
    again = platform.post("/api/v1/platform/tenants", json={
        "slug": "kommun-c", "name": "C", "infocaption_base_url": "https://c.example",
        "client_id": "c", "secrets": {"client_secret": "x", "webhook_secrets": [SECOND_SECRET]}})
    assert again.status_code == 409

"""Ops: queue depths and consumers on the real broker; dead letters replayed and re-processed."""
from __future__ import annotations

import pytest

from tests.conftest import completed_event, dumps, sign, wait_for
from tests.integration.api.conftest import add_course, add_employee, add_link, add_tree, audit_rows

pytestmark = pytest.mark.integration

POISON_TRIGGER = """
CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 'r-poison' THEN RAISE EXCEPTION 'poisoned for the test'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_poison BEFORE INSERT ON results FOR EACH ROW EXECUTE FUNCTION test_poison();
"""


@pytest.fixture
def poison(conn):
    """Results with id r-poison fail to insert until the fixture's `cure()` is called."""
    conn.execute(POISON_TRIGGER)

    def cure():
        conn.execute("DROP TRIGGER IF EXISTS test_poison ON results")
        conn.execute("DROP FUNCTION IF EXISTS test_poison()")

    yield cure
    cure()


def by_name(body):
    return {q["name"].rsplit(".", 1)[1]: q for q in body["queues"]}


def test_queues_show_depth_consumers_and_dead_letters(conn, api, client, settings, run_worker):
    r = api.get("/api/v1/ops/queues")
    assert r.status_code == 200
    body = r.get_json()
    assert body["dead_letters"] == 0
    assert {q["name"] for q in body["queues"]} == {f"{settings.queue_prefix}.{k}" for k in ("events", "backfill", "dead")}
    # nothing declared these queues yet: the endpoint declares nothing either (passive)
    assert all(not q["declared"] and q["depth"] == 0 for q in body["queues"])

    raw = dumps(completed_event("r-1", "anna@kommun.se"))
    for _ in range(2):
        assert client.post("/webhooks/infocaption", data=raw, headers=sign(raw)).status_code == 202
    conn.execute("INSERT INTO dead_letters (queue, payload, error) VALUES (%s, '{}', 'x'), (%s, '{}', 'y'),"
                 " ('elsewhere.events', '{}', 'z')",
                 (f"{settings.queue_prefix}.events", f"{settings.queue_prefix}.events"))
    queues = by_name(api.get("/api/v1/ops/queues").get_json())
    assert (queues["events"]["declared"], queues["events"]["depth"], queues["events"]["consumers"]) == (True, 2, 0)
    assert queues["events"]["dead_letters"] == 2 and queues["backfill"]["dead_letters"] == 0
    assert api.get("/api/v1/ops/queues").get_json()["dead_letters"] == 3

    run_worker()
    wait_for(lambda: by_name(api.get("/api/v1/ops/queues").get_json())["events"]["consumers"] == 1,
             message="the worker shown as consumer")
    wait_for(lambda: by_name(api.get("/api/v1/ops/queues").get_json())["events"]["depth"] == 0,
             message="the queue drained")


def test_a_replayed_dead_letter_is_processed_again(conn, api, client, run_worker, poison):
    add_course(conn, 4711)
    tree = add_tree(conn)
    add_link(conn, 4711, tree["leaf"])
    emp = add_employee(conn, "anna.andersson@kommun.se")
    run_worker()
    raw = dumps(completed_event("r-poison", "anna.andersson@kommun.se"))
    assert client.post("/webhooks/infocaption", data=raw, headers=sign(raw, msg_id="msg-poison")).status_code == 202
    [letter] = wait_for(lambda: conn.execute("SELECT id, queue, webhook_id, error FROM dead_letters").fetchall(),
                        message="the event dead-lettered")
    assert letter["webhook_id"] == "msg-poison" and "poisoned" in letter["error"]
    assert api.get("/api/v1/ops/queues").get_json()["dead_letters"] == 1
    assert conn.execute("SELECT count(*) AS n FROM grants").fetchone()["n"] == 0

    poison()  # the cause is fixed; ops replay the event
    r = api.post("/api/v1/ops/dead-letters/replay", json={"ids": [letter["id"]]})
    assert r.status_code == 200
    assert r.get_json() == {"replayed": 1, "skipped": 0}
    wait_for(lambda: conn.execute("SELECT employee_id FROM grants").fetchall() == [{"employee_id": emp}],
             message="the replayed event granted")
    assert conn.execute("SELECT replayed_at IS NOT NULL AS done FROM dead_letters").fetchone()["done"]
    assert api.get("/api/v1/ops/queues").get_json()["dead_letters"] == 0
    assert api.post("/api/v1/ops/dead-letters/replay", json={"ids": [letter["id"]]}).get_json()["replayed"] == 0
    [row] = audit_rows(conn, "dead_letters.replay")
    assert row["after"]["replayed"] == [letter["id"]] and row["actor"] == "admin"


def test_replay_all_without_ids_and_refuse_malformed_requests(conn, api, settings):
    prefix = settings.queue_prefix
    conn.execute(
        "INSERT INTO dead_letters (queue, payload, error) VALUES"
        " (%s, '{\"link_id\": 1}', 'a'), (%s, '{\"type\": \"x\"}', 'b'), (%s, '{}', 'c')",
        (f"{prefix}.backfill", f"{prefix}.events", f"{prefix}.unknown"))
    for body in ({"ids": ["1"]}, {"ids": [0]}, {"ids": 1}, {"all": True}, {"ids": None}):
        assert api.post("/api/v1/ops/dead-letters/replay", json=body).status_code == 422, body
    r = api.post("/api/v1/ops/dead-letters/replay")
    assert r.status_code == 200
    assert r.get_json() == {"replayed": 2, "skipped": 1}
    queues = by_name(api.get("/api/v1/ops/queues").get_json())
    assert queues["backfill"]["depth"] == 1 and queues["events"]["depth"] == 1
    assert api.post("/api/v1/ops/dead-letters/replay", json={}).get_json() == {"replayed": 0, "skipped": 1}


def test_an_unreachable_broker_is_503_and_keeps_the_dead_letters(conn, settings, pool, make_token):
    from dataclasses import replace

    from service.app import create_app

    # A real broker address where nothing listens.
    gone = replace(settings, broker_url="amqp://guest:guest@127.0.0.1:1//")
    app = create_app(gone, pool=pool)
    conn.execute("INSERT INTO dead_letters (queue, payload, error) VALUES (%s, '{\"type\": \"x\"}', 'a')",
                 (f"{settings.queue_prefix}.events",))
    headers = {"Authorization": f"Bearer {make_token('ops')}"}
    try:
        client = app.test_client()
        r = client.get("/api/v1/ops/queues", headers=headers)
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert r.get_json()["message"] == "the broker is unavailable; retry later"
        r = client.post("/api/v1/ops/dead-letters/replay", headers=headers)
        assert r.status_code == 503
        assert r.get_json()["errors"] == {"replayed": []}
        assert conn.execute("SELECT count(*) AS n FROM dead_letters WHERE replayed_at IS NULL").fetchone()["n"] == 1
    finally:
        app.extensions["competence_bridge"].publisher.close()

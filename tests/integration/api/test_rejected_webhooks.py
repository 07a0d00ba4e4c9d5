"""Rejected webhooks: visible to ops through the API, pruned by the scheduler after
REJECTED_RETENTION_DAYS."""
from __future__ import annotations

import dataclasses
import json

import pytest

from service.access.auth import SETTINGS
from tests.conftest import completed_event, dumps, sign
from tests.integration.api.conftest import Api

pytestmark = pytest.mark.integration
URL = "/webhooks/infocaption"
LIST = "/api/v1/ops/rejected-webhooks"


def test_ops_see_rejected_webhooks_newest_first_without_secrets(conn, client, api, make_token):
    body = completed_event("r-1", "anna@kommun.se")
    body["data"]["user"]["firstName"] = "\ud800"
    raw = dumps(body)
    headers = sign(raw, msg_id="msg-surrogate")
    assert client.post(URL, data=raw, headers=headers).status_code == 400
    assert client.post(URL, data=b'{"x": "\xff"}', headers={"webhook-id": "unsigned"}).status_code == 401
    r = api.get(LIST)
    assert r.status_code == 200
    assert json.loads(r.headers["X-Pagination"])["total"] == 2
    unsigned, bad_text = r.get_json()
    assert (unsigned["status"], unsigned["webhook_id"], unsigned["body"]) == (401, "unsigned", None)
    assert bad_text["status"] == 400 and bad_text["webhook_id"] == "msg-surrogate"
    assert bad_text["body"] == raw and bad_text["body_bytes"] == len(raw)
    assert bad_text["errors"] == {"data": {"user": {"firstName": ["must be valid Unicode text (no lone surrogates)"]}}}
    assert "webhook-signature" not in bad_text["headers"]
    assert headers["webhook-signature"] not in r.get_data(as_text=True)
    only = api.get(f"{LIST}?status=400").get_json()
    assert [row["id"] for row in only] == [bad_text["id"]]
    assert api.get(f"{LIST}?status=200").status_code == 422
    assert client.get(LIST).status_code == 401
    assert Api(client, make_token("settings", [SETTINGS])).get(LIST).status_code == 403


def test_a_body_that_is_not_utf8_is_shown_escaped(conn, api):
    conn.execute("INSERT INTO rejected_webhooks (status, reason, body) VALUES (400, 'the body is not JSON', %s)",
                 (b'{"a": "\xff\x00"}',))
    [row] = api.get(LIST).get_json()
    assert row["body"] == '{"a": "\\xff\x00"}' and row["body_bytes"] == 11


def _kept(conn, days_ago: list[int]) -> None:
    for days in days_ago:
        conn.execute("INSERT INTO rejected_webhooks (received_at, status, reason)"
                     " VALUES (now() - make_interval(days => %s), 401, 'test')", (days,))


def test_pruning_deletes_only_rows_older_than_the_retention(conn, pool):
    from workers.housekeeping import prune_rejected_webhooks

    _kept(conn, [0, 1, 29, 31, 31, 40, 400])
    assert prune_rejected_webhooks(pool, 30, batch=2) == 4  # several batches
    left = conn.execute("SELECT count(*) AS n FROM rejected_webhooks").fetchone()["n"]
    assert left == 3
    assert prune_rejected_webhooks(pool, 30) == 0


def test_the_scheduler_prunes_after_rejected_retention_days(conn, settings, database_url):
    from service.platform import config as config_mod
    from workers.scheduler import Scheduler

    assert config_mod.load({**_env(settings), "REJECTED_RETENTION_DAYS": "7"}).rejected_retention_days == 7
    _kept(conn, [1, 6, 8, 100])
    scheduler = Scheduler(dataclasses.replace(settings, rejected_retention_days=7), database_url)
    try:
        [job] = [j for j in scheduler.jobs if j.name == "prune_rejected_webhooks"]
        assert job.per_tenant
        job.run(scheduler.tenants.get("default"))
    finally:
        scheduler.pool.close()
        scheduler.publisher.close()
    assert conn.execute("SELECT count(*) AS n FROM rejected_webhooks").fetchone()["n"] == 2


def _env(settings) -> dict:
    return {"DATABASE_URL": settings.database_url, "BROKER_URL": settings.broker_url,
            "INFOCAPTION_BASE_URL": settings.infocaption_base_url,
            "INFOCAPTION_CLIENT_ID": "test", "INFOCAPTION_CLIENT_SECRET": "test",
            "INFOCAPTION_WEBHOOK_SECRETS": " ".join(settings.webhook_secrets)}

"""/readyz answers 503 while PostgreSQL or RabbitMQ is cut off and 200 once it is back.

The machine's servers are shared with other tests, so they are never stopped: the app talks to
them through TCP proxies of this test's own, which are cut and restored.
"""
from __future__ import annotations

import dataclasses
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from service.platform import db
from service.app import create_app
from service.platform.migrate import available, migrate
from tests.conftest import ADMIN_URL
from tests.integration.ops.metrics_util import scrape, value
from tests.integration.ops.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


def through(url: str, port: int) -> str:
    """The same URL with its port replaced (the proxy's)."""
    parts = urlsplit(url)
    userinfo, _, _hostport = parts.netloc.rpartition("@")
    netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def proxied(settings, database_url):
    """An app whose database and broker connections all pass through cuttable proxies."""
    pg = TcpProxy(urlsplit(database_url).port or 5432)
    mq = TcpProxy(urlsplit(settings.broker_url).port or 5672)
    s = dataclasses.replace(settings, database_url=through(database_url, pg.port),
                            broker_url=through(settings.broker_url, mq.port))
    pool = db.make_pool(s.database_url, max_size=2, name="proxied")
    pool.wait(timeout=10)
    app = create_app(s, pool=pool)
    try:
        yield app.test_client(), pg, mq
    finally:
        pg.restore()
        mq.restore()
        app.extensions["competence_bridge"].publisher.close()
        pool.close()
        pg.close()
        mq.close()


def ready(client):
    response = client.get("/readyz")
    return response.status_code, response.get_json()


def test_healthz_answers_without_asking_anything(proxied):
    client, pg, mq = proxied
    pg.cut()
    mq.cut()
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_follows_the_database(proxied):
    client, pg, _ = proxied
    status, body = ready(client)
    assert status == 200 and body["status"] == "ready"
    assert body["checks"]["migrations"] == {"ok": True, "pending": []}

    pg.cut()
    status, body = ready(client)
    assert status == 503
    assert body["failed"] == ["database"] and body["code"] == 503
    assert body["message"] == "not ready: database"
    assert body["checks"]["broker"] == {"ok": True}
    assert body["checks"]["database"]["ok"] is False and body["errors"]["database"]
    # The scrape still answers, and says which dependency it could not read.
    samples = scrape(client)
    assert value(samples, "cb_dependency_up", dependency="database") == 0
    assert value(samples, "cb_dependency_up", dependency="broker") == 1
    assert value(samples, "cb_results", tenant="default", status="granted") is None

    pg.restore()
    status, body = ready(client)
    assert status == 200 and body["checks"]["database"] == {"ok": True}


def test_readyz_follows_the_broker(proxied):
    client, _, mq = proxied
    assert ready(client)[0] == 200

    mq.cut()
    status, body = ready(client)
    assert status == 503
    assert body["failed"] == ["broker"]
    assert body["checks"]["database"] == {"ok": True}
    samples = scrape(client)
    assert value(samples, "cb_dependency_up", dependency="broker") == 0
    assert value(samples, "cb_dependency_up", dependency="database") == 1

    mq.restore()
    assert ready(client) == (200, {"status": "ready", "checks": {
        "database": {"ok": True}, "broker": {"ok": True}, "migrations": {"ok": True, "pending": []}}})


def test_readyz_names_both_when_both_are_down(proxied):
    client, pg, mq = proxied
    pg.cut()
    mq.cut()
    status, body = ready(client)
    assert status == 503 and body["failed"] == ["database", "broker"]
    pg.restore()
    mq.restore()
    assert ready(client)[0] == 200


def test_readyz_waits_for_migrations(settings):
    name = f"cb_test_unmigrated_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(ADMIN_URL, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    pool = db.make_pool(url, max_size=1, name="unmigrated")
    try:
        pool.wait(timeout=10)
        app = create_app(dataclasses.replace(settings, database_url=url), pool=pool)
        client = app.test_client()
        status, body = ready(client)
        assert status == 503 and body["failed"] == ["migrations"]
        assert body["checks"]["migrations"]["pending"] == [f"{m.version:04d}_{m.name}" for m in available()]

        with db.connect(url, autocommit=True) as conn:
            migrate(conn)
        assert ready(client)[0] == 200
    finally:
        pool.close()
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()

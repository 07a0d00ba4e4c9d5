"""The subscriptions API: the secret shown once and kept encrypted, URLs checked, changes audited."""
from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet

from service.access import tokens
from service.app import create_app
from tests.integration.api.conftest import Api
from tests.integration.events.conftest import ENCRYPTION_KEY, with_changes
from tests.integration.events.helpers import grant, seed

URL = "https://hooks.example.org/competence"


@pytest.fixture
def events_app(event_settings, pool):
    app = create_app(with_changes(event_settings, subscriber_allow_private=False), pool=pool)
    yield app
    app.extensions["competence_bridge"].publisher.close()


@pytest.fixture
def api(events_app, conn):
    return Api(events_app.test_client(), tokens.create(conn, "admin", ["administer_competence_integrations"],
                                                       actor="test"))


def test_the_secret_is_shown_once_and_kept_encrypted(api, conn):
    answer = api.post("/api/v1/subscriptions", json={"url": URL, "events": ["grant.created", "grant.revoked"],
                                                      "description": "Personalsystemet"})
    assert answer.status_code == 201, answer.get_json()
    created = answer.get_json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created["events"] == ["grant.created", "grant.revoked"] and created["created_by"] == "admin"

    listed = api.get("/api/v1/subscriptions")
    assert listed.status_code == 200
    [row] = listed.get_json()
    assert row["id"] == created["id"] and "secret" not in row and row["pending"] == 0
    assert secret not in listed.get_data(as_text=True)

    stored = conn.execute("SELECT secret_encrypted FROM subscriptions").fetchone()["secret_encrypted"]
    assert secret not in stored
    assert Fernet(ENCRYPTION_KEY).decrypt(stored.encode()).decode() == secret
    audit = conn.execute("SELECT action, target, after FROM audit_log WHERE action LIKE 'subscription.%'").fetchall()
    assert [(a["action"], a["target"]) for a in audit] == [("subscription.create", f"subscription:{created['id']}")]
    assert secret not in json.dumps(audit[0]["after"]) and "secret" not in audit[0]["after"]


def test_delete_stops_deliveries_and_is_audited(api, conn, event_settings):
    created = api.post("/api/v1/subscriptions", json={"url": URL, "events": ["grant.created"]}).get_json()
    ids = seed(conn)
    grant(conn, ids)
    assert conn.execute("SELECT count(*) AS n FROM event_deliveries").fetchone()["n"] == 1
    assert api.delete(f"/api/v1/subscriptions/{created['id']}").status_code == 204
    assert api.delete(f"/api/v1/subscriptions/{created['id']}").status_code == 404
    assert conn.execute("SELECT count(*) AS n FROM event_deliveries").fetchone()["n"] == 0
    assert api.get(f"/api/v1/subscriptions/{created['id']}/deliveries").status_code == 404
    assert conn.execute("SELECT count(*) AS n FROM audit_log WHERE action = 'subscription.delete'").fetchone()["n"] == 1


@pytest.mark.parametrize("body, field", [
    ({"url": "http://hooks.example.org/x", "events": ["grant.created"]}, "url"),
    ({"url": "https://127.0.0.1/x", "events": ["grant.created"]}, "url"),
    ({"url": "https://10.0.0.5/x", "events": ["grant.created"]}, "url"),
    ({"url": "https://[fe80::1]/x", "events": ["grant.created"]}, "url"),
    ({"url": "https://localhost:8443/x", "events": ["grant.created"]}, "url"),
    ({"url": "https://user:pw@hooks.example.org/x", "events": ["grant.created"]}, "url"),
    ({"url": URL, "events": []}, "events"),
    ({"url": URL, "events": ["grant.updated"]}, "events"),
    ({"url": URL}, "events"),
    ({"url": URL, "events": ["grant.created"], "secret": "mine"}, "secret"),
])
def test_refused_subscriptions(api, conn, body, field):
    answer = api.post("/api/v1/subscriptions", json=body)
    assert answer.status_code == 422, answer.get_json()
    errors = answer.get_json()["errors"]
    assert field in errors.get("json", errors)  # schema errors come by location
    assert conn.execute("SELECT count(*) AS n FROM subscriptions").fetchone()["n"] == 0


def test_without_encryption_key_outside_demo_mode_creating_is_refused_naming_it(event_settings, pool, conn):
    app = create_app(with_changes(event_settings, encryption_keys=()), pool=pool)
    try:
        api = Api(app.test_client(), tokens.create(conn, "admin", ["administer_competence_integrations"], actor="t"))
        answer = api.post("/api/v1/subscriptions", json={"url": URL, "events": ["grant.created"]})
    finally:
        app.extensions["competence_bridge"].publisher.close()
    assert answer.status_code == 503
    assert "ENCRYPTION_KEY" in answer.get_json()["message"]
    assert conn.execute("SELECT count(*) AS n FROM subscriptions").fetchone()["n"] == 0


def test_demo_mode_takes_http_and_has_a_demo_key(event_settings, pool, conn):
    from service.platform import config

    demo = config.load({"DEMO": "1", "DATABASE_URL": event_settings.database_url,
                        "BROKER_URL": event_settings.broker_url, "QUEUE_PREFIX": event_settings.queue_prefix})
    assert demo.encryption_keys == (config.DEMO_ENCRYPTION_KEY,)
    app = create_app(demo, pool=pool)
    try:
        api = Api(app.test_client(), tokens.create(conn, "admin", ["administer_competence_integrations"], actor="t"))
        answer = api.post("/api/v1/subscriptions", json={"url": "http://hooks.example.org/x", "events": ["grant.created"]})
    finally:
        app.extensions["competence_bridge"].publisher.close()
    assert answer.status_code == 201


def test_the_subscriptions_api_needs_the_integrations_permission(events_app, conn):
    settings_only = Api(events_app.test_client(),
                        tokens.create(conn, "settings", ["administer_competence_settings"], actor="t"))
    assert settings_only.get("/api/v1/subscriptions").status_code == 403
    assert settings_only.post("/api/v1/subscriptions", json={"url": URL, "events": ["grant.created"]}).status_code == 403
    assert events_app.test_client().get("/api/v1/subscriptions").status_code == 401


def test_settings_of_events_are_read_and_checked(event_settings):
    from service.platform import config

    base = {"DEMO": "1"}
    assert config.load({**base, "EXPIRY_NOTICE_DAYS": "7, 30,90"}).expiry_notice_days == (90, 30, 7)
    assert config.load({**base, "REQUESTS_CA_BUNDLE": "/x/ca.pem", "SSL_CERT_FILE": "/y"}).ca_bundle == "/x/ca.pem"
    assert config.load({**base, "SSL_CERT_FILE": "/y"}).ca_bundle == "/y"
    assert event_settings.subscriber_allow_private is True
    for env, named in [({"EXPIRY_NOTICE_DAYS": "30,x"}, "EXPIRY_NOTICE_DAYS"),
                       ({"EXPIRY_NOTICE_DAYS": "0"}, "EXPIRY_NOTICE_DAYS"),
                       ({"ENCRYPTION_KEY": "short"}, "ENCRYPTION_KEY"),
                       ({"SMTP_URL": "http://mail"}, "SMTP_URL"),
                       ({"SUBSCRIBER_ALLOW_PRIVATE": "maybe"}, "SUBSCRIBER_ALLOW_PRIVATE")]:
        with pytest.raises(config.ConfigError, match=named):
            config.load({**base, **env})
    with pytest.raises(config.ConfigError, match="MAIL_FROM"):
        config.load({"SMTP_URL": "smtp://127.0.0.1:25", "INFOCAPTION_BASE_URL": "https://x",
                     "INFOCAPTION_CLIENT_ID": "a", "INFOCAPTION_CLIENT_SECRET": "b",
                     "INFOCAPTION_WEBHOOK_SECRETS": "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"})
    rotated = config.load({**base, "ENCRYPTION_KEY": f"{Fernet.generate_key().decode()}, {ENCRYPTION_KEY}"})
    assert len(rotated.encryption_keys) == 2 and rotated.encryption_keys[1] == ENCRYPTION_KEY


def test_a_host_name_that_resolves_to_a_private_address_is_refused_at_creation(api, conn, monkeypatch):
    import socket

    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):  # the organisation's DNS, as it answers for an internal name
        if host == "hooks.internal.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.20.30.40", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    answer = api.post("/api/v1/subscriptions", json={"url": "https://hooks.internal.example/x",
                                                      "events": ["grant.created"]})
    assert answer.status_code == 422 and "10.20.30.40" in answer.get_json()["message"]
    # A name that does not resolve (yet) is accepted: it is checked again at every delivery.
    assert api.post("/api/v1/subscriptions", json={"url": URL, "events": ["grant.created"]}).status_code == 201

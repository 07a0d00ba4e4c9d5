"""The tenants one process sees (service/tenants/tenants.py, Directory): rows read every ttl,
a tenant's secrets decrypted only when asked for, once per encrypted value, and a changed
secret seen after the ttl (docs/tenants.md, "Webhooks")."""
from __future__ import annotations

import dataclasses
import logging

import pytest
from cryptography.fernet import Fernet

from service.platform import crypto, db, tenancy
from service.tenants import tenants
from service.tenants.tenants import Directory
from tests.conftest import OLD_SECRET
from tests.integration.tenants.conftest import SECOND, SECOND_SECRET

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def decrypted(monkeypatch):
    """The number of times a tenant's secrets were decrypted so far."""
    calls = []
    original = crypto.decrypt

    def counting(keys, token, what):
        calls.append(what)
        return original(keys, token, what)

    monkeypatch.setattr(crypto, "decrypt", counting)
    return lambda: calls.count(tenants.WHAT)


def test_secrets_are_decrypted_only_when_asked_for_and_once_per_value(
        second_tenant, settings, pool, database_url, decrypted):
    with db.connect(database_url, autocommit=True) as owner:
        third = tenants.create(owner, settings, slug="kommun-c", name="C",
                               infocaption_base_url="http://127.0.0.1:9", client_id="c",
                               secrets={"client_secret": "c-secret", "webhook_secrets": [OLD_SECRET]})
    clock = Clock()
    directory = Directory(settings, pool, ttl=10.0, clock=clock)

    # What a worker or the scheduler asks: slugs, ids, time zones; nothing decrypted.
    assert {t.slug for t in directory.active()} == {"default", SECOND, "kommun-c"}
    assert directory.by_id(second_tenant.id).time_zone == "Europe/Stockholm"
    found = directory.get(SECOND)
    assert (found.id, found.client_id, found.active) == (second_tenant.id, "b", True)
    assert decrypted() == 0
    assert "secret" not in repr(found) and SECOND_SECRET not in repr(found)

    # The webhook view asks for one tenant's webhook secrets: that tenant's alone are decrypted.
    assert directory.get(SECOND).webhook_secrets == (SECOND_SECRET,)
    assert decrypted() == 1
    assert directory.get(SECOND).client_secret == "b-secret"  # the same value: kept
    assert directory.get(SECOND).webhook_secrets == (SECOND_SECRET,)
    assert decrypted() == 1
    # `default` is the environment's: never decrypted.
    assert directory.get("default").webhook_secrets == settings.webhook_secrets
    assert decrypted() == 1

    # The rows are read again after the ttl; unchanged secrets are not decrypted again.
    clock.now += 10.0
    assert directory.get(SECOND).webhook_secrets == (SECOND_SECRET,)
    assert decrypted() == 1
    assert directory.by_id(third).client_secret == "c-secret"
    assert decrypted() == 2


def test_a_changed_secret_is_seen_after_the_ttl(second_tenant, settings, pool, database_url,
                                                decrypted):
    clock = Clock()
    directory = Directory(settings, pool, ttl=10.0, clock=clock)
    assert directory.get(SECOND).webhook_secrets == (SECOND_SECRET,)
    with db.connect(database_url, autocommit=True) as owner:
        tenants.set_secrets(owner, settings, SECOND, {"client_secret": "rotated",
                                                      "webhook_secrets": [OLD_SECRET, SECOND_SECRET]})
    clock.now += 9.0  # within the ttl: the rows read before
    assert directory.get(SECOND).webhook_secrets == (SECOND_SECRET,)
    clock.now += 1.0
    rotated = directory.get(SECOND)
    assert rotated.webhook_secrets == (OLD_SECRET, SECOND_SECRET)
    assert rotated.client_secret == "rotated"
    assert decrypted() == 2


def test_a_tenant_whose_secrets_cannot_be_decrypted_goes_without_them_logged_once(
        second_tenant, settings, pool, caplog):
    wrong = dataclasses.replace(settings, encryption_keys=(Fernet.generate_key().decode(),))
    directory = Directory(wrong, pool, ttl=0.0)
    with caplog.at_level(logging.WARNING, logger="service.tenants.tenants"):
        assert directory.get(SECOND).webhook_secrets == ()
        assert directory.get(SECOND).client_secret == ""
        assert directory.get("default").webhook_secrets == settings.webhook_secrets
    warned = [r for r in caplog.records if r.name == "service.tenants.tenants"]
    assert len(warned) == 1 and SECOND in warned[0].getMessage()
    assert "b-secret" not in caplog.text and SECOND_SECRET not in caplog.text
    assert tenancy.label(second_tenant.id) == SECOND  # its slug is known all the same

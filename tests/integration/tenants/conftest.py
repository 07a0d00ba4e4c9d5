"""A second tenant beside `default`, with secrets of its own (docs/tenants.md)."""
from __future__ import annotations

import base64
import dataclasses

import pytest
from cryptography.fernet import Fernet

from service.platform import db
from service.tenants import tenants

SECOND = "kommun-b"
SECOND_SECRET = "whsec_" + base64.b64encode(b"the second tenant's own secret!!").decode()
KEY = Fernet.generate_key().decode()


@pytest.fixture
def settings(settings):
    """The test's settings with an ENCRYPTION_KEY: tenants keep their secrets encrypted (the
    app, the worker and the scheduler of these tests read them with it)."""
    return dataclasses.replace(settings, encryption_keys=(KEY,))


@pytest.fixture
def second_tenant(conn, settings, database_url):
    """The tenant `kommun-b` (made by the owner, as `tenant create` does)."""
    with db.connect(database_url, autocommit=True) as owner:
        tenant_id = tenants.create(owner, settings, slug=SECOND, name="Kommun B",
                                   infocaption_base_url="http://127.0.0.1:9", client_id="b",
                                   secrets={"client_secret": "b-secret",
                                            "webhook_secrets": [SECOND_SECRET]})
        return tenants.by_id(owner, settings, tenant_id)

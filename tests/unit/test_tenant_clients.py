"""Each tenant's InfoCaption client has that tenant's host and credentials (docs/tenants.md,
"The scheduler"), and a changed credential makes a new one."""
from __future__ import annotations

import dataclasses

from service.platform import config
from service.tenants.clients import Clients
from service.tenants.tenants import Secrets, Tenant


def tenant(id_: int, url: str, client_id: str, secret: str) -> Tenant:
    return Tenant(id=id_, slug=f"t{id_}", name="T", infocaption_base_url=url, client_id=client_id,
                  time_zone="Europe/Stockholm", active=True, secrets=Secrets(client_secret=secret))


def test_each_tenant_gets_a_client_of_its_own_host_and_credentials():
    clients = Clients(config.load({"DEMO": "1"}))
    a = clients.of(tenant(1, "http://a.example", "a-id", "a-secret"))
    b = clients.of(tenant(2, "http://b.example", "b-id", "b-secret"))
    assert a is not b
    assert (a.base_url, a.client_id) == ("http://a.example", "a-id")
    assert (b.base_url, b.client_id) == ("http://b.example", "b-id")
    assert clients.of(tenant(1, "http://a.example", "a-id", "a-secret")) is a  # kept
    rotated = clients.of(dataclasses.replace(tenant(1, "http://a.example", "a-id", "new")))
    assert rotated is not a  # a new secret: a new client (and a new token)

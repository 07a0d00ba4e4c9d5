"""One InfoCaption client per tenant, with the tenant's own host and credentials."""
from __future__ import annotations

import threading

from service.infocaption.client import InfoCaptionClient
from service.platform.config import Settings


class Clients:
    """The clients of a process's tenants, made again when a host or credential changes."""

    def __init__(self, settings: Settings, **client_kwargs):
        self.settings = settings
        self.client_kwargs = client_kwargs
        self._lock = threading.Lock()
        self._made: dict[int, tuple[tuple, InfoCaptionClient]] = {}

    def of(self, tenant) -> InfoCaptionClient:
        """The client of a tenant (service.tenants.tenants.Tenant)."""
        key = (tenant.infocaption_base_url, tenant.client_id, tenant.client_secret)
        with self._lock:
            known = self._made.get(tenant.id)
            if known is not None and known[0] == key:
                return known[1]
            client = InfoCaptionClient.for_tenant(tenant, self.settings, **self.client_kwargs)
            self._made[tenant.id] = (key, client)
            return client

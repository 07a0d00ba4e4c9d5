"""Tenants: the organisations one deployment serves, each with its own InfoCaption host,
credentials, webhook secrets and time zone (docs/tenants.md).

The tenant `default` is configured from the environment (INFOCAPTION_*, TIME_ZONE), as a
single-organisation deployment always was; every other tenant from its row, whose secrets are
kept encrypted with ENCRYPTION_KEY and never logged or answered.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import logging

import psycopg

from service.platform import crypto, db, tenancy
from service.platform.config import ConfigError, Settings, check_webhook_secrets

log = logging.getLogger(__name__)

WHAT = "tenant secrets"
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class TenantError(ValueError):
    """A tenant cannot be made or changed as asked (the message says why)."""


# What may be shown of a tenant (never its secrets).
PUBLIC = ("id", "slug", "name", "infocaption_base_url", "client_id", "time_zone", "active")


@dataclass(frozen=True)
class Tenant:
    id: int
    slug: str
    name: str
    infocaption_base_url: str
    client_id: str
    time_zone: str
    active: bool
    client_secret: str = field(repr=False, default="")
    webhook_secrets: tuple[str, ...] = field(repr=False, default=())

    def public(self) -> dict:
        """What may be shown of a tenant: never its secrets, only how many webhook secrets."""
        return {k: getattr(self, k) for k in PUBLIC} | {"webhook_secrets": len(self.webhook_secrets)}


def default_tenant(settings: Settings, *, name: str = tenancy.DEFAULT_SLUG,
                   active: bool = True) -> Tenant:
    """The tenant `default` as the environment configures it (no database needed)."""
    return Tenant(id=tenancy.DEFAULT_ID, slug=tenancy.DEFAULT_SLUG, name=name,
                  infocaption_base_url=settings.infocaption_base_url,
                  client_id=settings.infocaption_client_id, time_zone=settings.time_zone,
                  active=active, client_secret=settings.infocaption_client_secret,
                  webhook_secrets=settings.webhook_secrets)


def _from_row(row: dict, settings: Settings) -> Tenant:
    if row["id"] == tenancy.DEFAULT_ID:
        return default_tenant(settings, name=row["name"], active=row["active"])
    kept = {}
    if row["secrets"]:
        try:
            kept = json.loads(crypto.decrypt(settings.encryption_keys, row["secrets"], WHAT))
        except crypto.NotConfigured as exc:
            # This tenant only goes without its secrets (its webhooks are 401, its InfoCaption
            # unreachable) until the key is right; the others are not held up by it.
            log.warning("tenant %s: %s", row["slug"], exc)
    return Tenant(id=row["id"], slug=row["slug"], name=row["name"],
                  infocaption_base_url=row["infocaption_base_url"] or "",
                  client_id=row["client_id"] or "", time_zone=row["time_zone"],
                  active=row["active"], client_secret=kept.get("client_secret", ""),
                  webhook_secrets=tuple(kept.get("webhook_secrets", ())))


def by_slug(conn: psycopg.Connection, settings: Settings, slug: str) -> Tenant | None:
    row = conn.execute(db.q("tenant_by_slug"), {"slug": slug}).fetchone()
    return _from_row(row, settings) if row else None


def by_id(conn: psycopg.Connection, settings: Settings, tenant_id: int) -> Tenant | None:
    row = conn.execute(db.q("tenant_by_id"), {"id": tenant_id}).fetchone()
    return _from_row(row, settings) if row else None


def all_tenants(conn: psycopg.Connection, settings: Settings) -> list[Tenant]:
    return [_from_row(row, settings) for row in conn.execute(db.q("tenant_list")).fetchall()]


def list_public(conn: psycopg.Connection) -> list[dict]:
    """Every tenant as it may be shown, without decrypting anything."""
    return [{k: r[k] for k in PUBLIC} for r in conn.execute(db.q("tenant_list")).fetchall()]


def public_by_id(conn: psycopg.Connection, tenant_id: int) -> dict | None:
    """One tenant as it may be shown."""
    row = conn.execute(db.q("tenant_by_id"), {"id": tenant_id}).fetchone()
    return {k: row[k] for k in PUBLIC} if row else None


def _secrets_text(settings: Settings, secrets: dict) -> str:
    """Check the secrets object ({"client_secret", "webhook_secrets"}) and encrypt it."""
    if not isinstance(secrets, dict):
        raise TenantError('the secrets must be a JSON object {"client_secret": …, "webhook_secrets": […]}')
    client_secret = secrets.get("client_secret")
    webhook = secrets.get("webhook_secrets")
    if not isinstance(client_secret, str) or not client_secret:
        raise TenantError("client_secret: a non-empty string is required")
    if (not isinstance(webhook, list) or not webhook
            or not all(isinstance(s, str) for s in webhook)):
        raise TenantError('webhook_secrets: a list of one or more "whsec_…" strings is required')
    try:
        check_webhook_secrets(tuple(webhook), "webhook_secrets")
    except ConfigError as exc:
        raise TenantError(str(exc)) from None
    text = json.dumps({"client_secret": client_secret, "webhook_secrets": webhook})
    return crypto.encrypt(settings.encryption_keys, text, WHAT)


def create(conn: psycopg.Connection, settings: Settings, *, slug: str, name: str,
           infocaption_base_url: str, client_id: str, secrets: dict,
           time_zone: str = "Europe/Stockholm") -> int:
    """Add a tenant; return its id."""
    if not SLUG.match(slug or ""):
        raise TenantError("slug: lower-case letters, digits and '-', starting with a letter or digit, at most 63")
    if not (name or "").strip():
        raise TenantError("name: required")
    if not re.match(r"^https?://[^\s/]+", infocaption_base_url or ""):
        raise TenantError("infocaption_base_url: an http(s):// URL is required")
    if not (client_id or "").strip():
        raise TenantError("client_id: required")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise TenantError(f"time_zone: {time_zone!r} is not a known IANA time zone") from None
    encrypted = _secrets_text(settings, secrets)
    try:
        with conn.transaction():
            row = conn.execute(db.q("tenant_insert"), {
                "slug": slug, "name": name.strip(),
                "infocaption_base_url": infocaption_base_url.rstrip("/"),
                "client_id": client_id.strip(), "secrets": encrypted, "time_zone": time_zone,
            }).fetchone()
    except psycopg.errors.UniqueViolation:
        raise TenantError(f"a tenant with the slug {slug!r} exists already") from None
    return row["id"]


def set_secrets(conn: psycopg.Connection, settings: Settings, slug: str, secrets: dict) -> None:
    """Replace a tenant's secrets (rotation: give the new webhook secret beside the old one)."""
    if slug == tenancy.DEFAULT_SLUG:
        raise TenantError("the tenant 'default' is configured from the environment "
                          "(INFOCAPTION_CLIENT_SECRET, INFOCAPTION_WEBHOOK_SECRETS)")
    row = conn.execute(db.q("tenant_set_secrets"),
                       {"slug": slug, "secrets": _secrets_text(settings, secrets)}).fetchone()
    if row is None:
        raise TenantError(f"no tenant {slug!r}")


def set_active(conn: psycopg.Connection, slug: str, active: bool) -> None:
    if slug == tenancy.DEFAULT_SLUG and not active:
        raise TenantError("the tenant 'default' cannot be deactivated")
    row = conn.execute(db.q("tenant_set_active"), {"slug": slug, "active": active}).fetchone()
    if row is None:
        raise TenantError(f"no tenant {slug!r}")


def sync_default(conn: psycopg.Connection, settings: Settings) -> None:
    """Record the environment's time zone on `default` (migrate), for readers of the row."""
    conn.execute(db.q("tenant_sync_default"), {"time_zone": settings.time_zone})


class Directory:
    """The tenants as one process sees them, read again every `ttl` seconds: the webhook view
    asks per request, and a tenant made or closed is seen within the ttl."""

    def __init__(self, settings: Settings, pool, ttl: float = 10.0, clock=time.monotonic):
        self.settings = settings
        self.pool = pool
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._by_slug: dict[str, Tenant] = {}
        self._read_at: float | None = None

    def _fresh(self) -> dict[str, Tenant]:
        now = self.clock()
        with self._lock:
            if self._read_at is None or now - self._read_at >= self.ttl:
                with tenancy.scope(None), self.pool.connection() as conn:
                    found = all_tenants(conn, self.settings)
                self._by_slug = {t.slug: t for t in found}
                self._read_at = now
                for t in found:
                    tenancy.remember(t.id, t.slug)
            return self._by_slug

    def get(self, slug: str) -> Tenant | None:
        """The tenant of that slug, or None."""
        return self._fresh().get(slug)

    def by_id(self, tenant_id: int) -> Tenant | None:
        return next((t for t in self._fresh().values() if t.id == tenant_id), None)

    def active(self) -> list[Tenant]:
        return [t for t in self._fresh().values() if t.active]

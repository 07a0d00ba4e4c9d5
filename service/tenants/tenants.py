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
class Secrets:
    """A tenant's client secret and webhook secrets (never logged or answered)."""
    client_secret: str = field(repr=False, default="")
    webhook_secrets: tuple[str, ...] = field(repr=False, default=())

    def open(self) -> Secrets:
        return self


class Opened:
    """Tenants' secrets decrypted when first asked for, kept by their encrypted token: each
    token is decrypted once, and a changed secret, a new token, when it is first asked for."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._by_token: dict[str, Secrets] = {}

    def open(self, slug: str, token: str) -> Secrets:
        with self._lock:
            found = self._by_token.get(token)
            if found is None:
                found = self._by_token[token] = _decrypt(self.settings, slug, token)
            return found

    def keep_only(self, tokens: set[str]) -> None:
        """Forget the secrets no row holds any longer (replaced, or of no tenant now)."""
        with self._lock:
            self._by_token = {t: s for t, s in self._by_token.items() if t in tokens}


@dataclass(frozen=True)
class Sealed:
    """A tenant's secrets as its row keeps them (a Fernet token), decrypted when asked for."""
    token: str = field(repr=False)
    slug: str = field(repr=False, compare=False)
    opened: Opened = field(repr=False, compare=False)

    def open(self) -> Secrets:
        return self.opened.open(self.slug, self.token)


@dataclass(frozen=True)
class Tenant:
    id: int
    slug: str
    name: str
    infocaption_base_url: str
    client_id: str
    time_zone: str
    active: bool
    secrets: Secrets | Sealed = field(repr=False, default=Secrets())

    @property
    def client_secret(self) -> str:
        """The InfoCaption client secret (a kept one is decrypted when first asked for)."""
        return self.secrets.open().client_secret

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        """The webhook secrets (kept ones are decrypted when first asked for)."""
        return self.secrets.open().webhook_secrets

    def public(self) -> dict:
        """What may be shown of a tenant: never its secrets, only how many webhook secrets."""
        return {k: getattr(self, k) for k in PUBLIC} | {"webhook_secrets": len(self.webhook_secrets)}


def default_tenant(settings: Settings, *, name: str = tenancy.DEFAULT_SLUG,
                   active: bool = True) -> Tenant:
    """The tenant `default` as the environment configures it (no database needed)."""
    return Tenant(id=tenancy.DEFAULT_ID, slug=tenancy.DEFAULT_SLUG, name=name,
                  infocaption_base_url=settings.infocaption_base_url,
                  client_id=settings.infocaption_client_id, time_zone=settings.time_zone,
                  active=active, secrets=Secrets(settings.infocaption_client_secret,
                                                 settings.webhook_secrets))


def _decrypt(settings: Settings, slug: str, token: str) -> Secrets:
    try:
        kept = json.loads(crypto.decrypt(settings.encryption_keys, token, WHAT))
    except crypto.NotConfigured as exc:
        # This tenant only goes without its secrets (its webhooks are 401, its InfoCaption
        # unreachable) until the key is right; the others are not held up by it.
        log.warning("tenant %s: %s", slug, exc)
        return Secrets()
    return Secrets(kept.get("client_secret", ""), tuple(kept.get("webhook_secrets", ())))


def _from_row(row: dict, settings: Settings, opened: Opened | None = None) -> Tenant:
    """A tenant of its row; its secrets stay encrypted until asked for (through `opened`,
    which keeps what it decrypted for whoever reads the rows again)."""
    if row["id"] == tenancy.DEFAULT_ID:
        return default_tenant(settings, name=row["name"], active=row["active"])
    secrets = (Sealed(row["secrets"], row["slug"], opened or Opened(settings))
               if row["secrets"] else Secrets())
    return Tenant(id=row["id"], slug=row["slug"], name=row["name"],
                  infocaption_base_url=row["infocaption_base_url"] or "",
                  client_id=row["client_id"] or "", time_zone=row["time_zone"],
                  active=row["active"], secrets=secrets)


def by_slug(conn: psycopg.Connection, settings: Settings, slug: str) -> Tenant | None:
    row = conn.execute(db.q("tenant_by_slug"), {"slug": slug}).fetchone()
    return _from_row(row, settings) if row else None


def by_id(conn: psycopg.Connection, settings: Settings, tenant_id: int) -> Tenant | None:
    row = conn.execute(db.q("tenant_by_id"), {"id": tenant_id}).fetchone()
    return _from_row(row, settings) if row else None


def all_tenants(conn: psycopg.Connection, settings: Settings,
                opened: Opened | None = None) -> list[Tenant]:
    """Every tenant, none of their secrets decrypted until asked for."""
    opened = opened or Opened(settings)
    return [_from_row(row, settings, opened) for row in conn.execute(db.q("tenant_list")).fetchall()]


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
    asks per request, and a tenant made or closed is seen within the ttl.

    A tenant's secrets are decrypted only when they are asked for (the webhook view needs the
    webhook secrets of the one tenant its URL names; a worker needs only ids and time zones),
    once per encrypted token: a changed secret is seen with the rows read after the change."""

    def __init__(self, settings: Settings, pool, ttl: float = 10.0, clock=time.monotonic):
        self.settings = settings
        self.pool = pool
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._opened = Opened(settings)
        self._by_slug: dict[str, Tenant] = {}
        self._read_at: float | None = None

    def _fresh(self) -> dict[str, Tenant]:
        now = self.clock()
        with self._lock:
            if self._read_at is None or now - self._read_at >= self.ttl:
                with tenancy.scope(None), self.pool.connection() as conn:
                    found = all_tenants(conn, self.settings, self._opened)
                self._opened.keep_only({t.secrets.token for t in found
                                        if isinstance(t.secrets, Sealed)})
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

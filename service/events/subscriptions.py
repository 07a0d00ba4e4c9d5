"""Subscribers of outgoing events and their delivery log (docs/admin-api.md, "Subscriptions")."""
from __future__ import annotations

import base64
import ipaddress
import secrets
from datetime import datetime
from urllib.parse import urlsplit

import psycopg

from service.events.guard import Refused, public_address, resolve
from service.ops.audit import audit
from service.platform import crypto, db
from service.platform.crypto import NotConfigured
from service.platform.config import Settings
from service.platform.errors import Conflict, Invalid, NotFound
from service.platform.paging import Page, page_of

# The types a subscription may ask for (docs/events.md, "Types").
TYPES = ("grant.created", "grant.renewed", "grant.revoked", "grant.deleted", "grant.expiring",
         "grant.expired")
SECRET_BYTES = 32


WHAT = "subscription secrets"


def decrypt_secret(settings: Settings, token: str) -> str:
    """The signing secret of a subscription, for the sender only (never logged or answered)."""
    return crypto.decrypt(settings.encryption_keys, token, WHAT)


def check_url(url: str, settings: Settings) -> None:
    """Refuse a subscriber URL that is not https:// (outside demo mode) or names a private host.

    A host name is resolved, and checked again, at every delivery (service.events.delivery):
    this is the early answer for a URL that can never be delivered to.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise Invalid("the url is not a URL", {"url": ["not a URL"]}) from None
    allowed = ("https", "http") if settings.demo else ("https",)
    if parts.scheme not in allowed:
        raise Invalid("the url must be https://" + (" (or http:// in demo mode)" if settings.demo else ""),
                      {"url": ["must start with https://"]})
    if not parts.hostname:
        raise Invalid("the url has no host", {"url": ["has no host"]})
    if parts.username or parts.password:
        raise Invalid("the url must not carry credentials", {"url": ["must not carry user:password@"]})
    if settings.subscriber_allow_private:
        return
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname.lower().rstrip(".") in ("localhost",) or parts.hostname.lower().endswith(".localhost"):
            raise Invalid("the url names this machine", {"url": ["loopback; set SUBSCRIBER_ALLOW_PRIVATE=1 "
                                                               "for on-premises receivers"]}) from None
        check_resolved(url, settings)
        return
    if not public_address(address):
        raise Invalid("the url names a loopback, private or link-local address",
                      {"url": ["not a public address; set SUBSCRIBER_ALLOW_PRIVATE=1 for on-premises receivers"]})


def check_resolved(url: str, settings: Settings) -> None:
    """Refuse a host that resolves to a private address now; one that does not resolve yet passes."""
    try:
        resolve(url, settings)
    except Refused as exc:
        if str(exc).startswith("refused"):
            raise Invalid(str(exc), {"url": [str(exc)]}) from None


def create_subscription(conn: psycopg.Connection, settings: Settings, data: dict, *, actor: str) -> dict:
    """Add a subscriber; the answer carries its secret, the only time it is shown."""
    events = list(dict.fromkeys(data["events"]))
    check_url(data["url"], settings)
    crypto.cipher(settings.encryption_keys, WHAT)  # refused before anything is made
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")
    row = conn.execute(db.q("subscription_insert"), {
        "url": data["url"], "events": events, "description": data.get("description") or "",
        "secret_encrypted": crypto.encrypt(settings.encryption_keys, secret, WHAT),
        "created_by": actor,
    }).fetchone()
    audit(conn, actor, "subscription.create", f"subscription:{row['id']}", None, row)
    return {**row, "secret": secret}


def list_subscriptions(conn: psycopg.Connection, *, limit: int, offset: int) -> Page:
    return page_of(conn, "subscriptions", {}, limit, offset)


def delete_subscription(conn: psycopg.Connection, subscription_id: int, *, actor: str) -> None:
    """Remove a subscriber and its delivery log; nothing more is sent to it."""
    row = conn.execute(db.q("subscription_delete"), {"id": subscription_id}).fetchone()
    if row is None:
        raise NotFound(f"subscription {subscription_id} does not exist")
    audit(conn, actor, "subscription.delete", f"subscription:{subscription_id}", row, None)


def _subscription(conn: psycopg.Connection, subscription_id: int) -> dict:
    row = conn.execute(db.q("subscription_get"), {"id": subscription_id}).fetchone()
    if row is None:
        raise NotFound(f"subscription {subscription_id} does not exist")
    return row


def list_deliveries(conn: psycopg.Connection, subscription_id: int, *, state: str | None,
                    limit: int, offset: int) -> Page:
    """The delivery log of one subscription, newest first."""
    _subscription(conn, subscription_id)
    return page_of(conn, "subscription_deliveries", {"subscription_id": subscription_id, "state": state},
                   limit, offset)


def resend_delivery(conn: psycopg.Connection, subscription_id: int, delivery_id: int, *,
                    actor: str, now: datetime) -> dict:
    """Send a delivered or failed event again, with the same webhook-id and body."""
    _subscription(conn, subscription_id)
    before = conn.execute(db.q("delivery_get"), {"id": delivery_id, "subscription_id": subscription_id}).fetchone()
    if before is None:
        raise NotFound(f"delivery {delivery_id} of subscription {subscription_id} does not exist")
    if conn.execute(db.q("delivery_resend"), {"id": delivery_id, "subscription_id": subscription_id,
                                               "now": now}).fetchone() is None:
        raise Conflict(f"delivery {delivery_id} is still pending; it is sent when due",
                       {"state": ["pending"]})
    after = conn.execute(db.q("delivery_get"), {"id": delivery_id, "subscription_id": subscription_id}).fetchone()
    audit(conn, actor, "delivery.resend", f"subscription:{subscription_id}",
          {"delivery_id": delivery_id, "state": before["state"]}, {"delivery_id": delivery_id, "state": "pending"})
    return after

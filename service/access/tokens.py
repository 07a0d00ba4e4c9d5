"""API tokens: made once, stored as a SHA-256 hash, checked by hash."""
from __future__ import annotations

import hashlib
import secrets

import psycopg

from service.platform import db
from service.ops.audit import audit

INTEGRATIONS = "administer_competence_integrations"  # links, grants, reports, ops
SETTINGS = "administer_competence_settings"  # the competence tree, employees
PERMISSIONS = (INTEGRATIONS, SETTINGS)
PLATFORM = "platform"  # what a platform token may do (docs/tenants.md, "Platform tokens")
PREFIX = "cbt_"


class NameTaken(ValueError):
    """An active token has this name already (refused, not replaced: docs/processes.md)."""


def hash_token(token: str) -> str:
    """Return the stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create(conn: psycopg.Connection, name: str, permissions: list[str], actor: str = "cli",
           *, platform: bool = False) -> str:
    """Store a new token's hash and return the token itself (shown once, never stored).

    A tenant's token is written on a connection bound to the tenant; a `platform` token
    (docs/tenants.md, "Platform tokens") carries no permission and is written by the owner."""
    unknown = sorted(set(permissions) - set(PERMISSIONS))
    if unknown:
        raise ValueError(f"unknown permission(s): {', '.join(unknown)}")
    if platform and permissions:
        raise ValueError("a platform token carries no tenant permission")
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        with conn.transaction():  # a savepoint: the caller's transaction survives a refusal
            row = conn.execute(
                db.q("insert_platform_token" if platform else "insert_token"),
                {"name": name, "token_hash": hash_token(token), "permissions": sorted(set(permissions))},
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        # api_tokens_active_name_idx: one active token per name, checked by the database so
        # that two commands at once cannot both take it.
        raise NameTaken(f"a token named {name!r} exists already; revoke it first "
                        "(competence-bridge revoke-token --name …) or choose another name") from None
    if not platform:  # a platform token is no tenant's: no tenant's audit log
        audit(conn, actor, "token.create", f"token:{row['id']}",
              after={"name": name, "permissions": sorted(set(permissions))})
    return token


def revoke(conn: psycopg.Connection, name: str, actor: str = "cli") -> int:
    """Revoke the active token of that name; return how many were revoked."""
    rows = conn.execute(db.q("revoke_token"), {"name": name}).fetchall()
    for row in rows:
        audit(conn, actor, "token.revoke", f"token:{row['id']}", before={"name": name})
    return len(rows)


def lookup(conn: psycopg.Connection, token: str) -> dict | None:
    """Return {id, tenant_id, name, permissions, platform} of a valid token, or None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    return conn.execute(db.q("lookup_token"), {"token_hash": hash_token(token)}).fetchone()

"""Console users: passwords as argon2 hashes, sign-in, and the slow-down of failed sign-ins.

docs/console.md, "Sign-in" and "Rate limit". The failures are rows in the database, so that
every gunicorn process (and every web host) counts the same ones.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from service.access.tokens import PERMISSIONS
from service.ops.audit import audit
from service.platform import db

log = logging.getLogger(__name__)

MAX_FAILURES = 5  # failed sign-ins within the window, by user name or by address
WINDOW_S = 15 * 60  # ... and how long they count; the refusal ends when the oldest leaves it

_hasher = PasswordHasher()
# Checked when the user name is unknown, so that a wrong name takes as long as a wrong password.
_UNKNOWN_HASH = _hasher.hash("not the password of anyone")


class UsernameTaken(ValueError):
    """An active console user has this name already."""


@dataclass
class SignIn:
    """What a sign-in attempt came to: a user, a refusal (`retry_after_s`), or a wrong password."""

    user: dict | None = None
    retry_after_s: int | None = None


def create_user(conn: psycopg.Connection, username: str, password: str, permissions: list[str],
                *, actor: str = "cli") -> dict:
    """Add a console user with an argon2 hash of the password; UsernameTaken when in use."""
    username = username.strip()
    if not username or len(username) > 200:
        raise ValueError("the user name must be 1 to 200 characters")
    if len(password) < 8:
        raise ValueError("the password must be at least 8 characters")
    unknown = sorted(set(permissions) - set(PERMISSIONS))
    if unknown:
        raise ValueError(f"unknown permission(s): {', '.join(unknown)}")
    try:
        with conn.transaction():  # a savepoint: the caller's transaction survives a refusal
            row = conn.execute(db.q("console_user_insert"), {
                "username": username, "password_hash": _hasher.hash(password),
                "permissions": sorted(set(permissions))}).fetchone()
    except psycopg.errors.UniqueViolation:
        raise UsernameTaken(f"a console user named {username!r} exists already; choose another name") from None
    audit(conn, actor, "console_user.create", f"console_user:{row['id']}",
          after={"username": username, "permissions": row["permissions"]})
    return row


def ensure_user(conn: psycopg.Connection, username: str, password: str, permissions: list[str],
                *, actor: str) -> bool:
    """Create the user unless an active one of that name exists; tell whether it was created."""
    if conn.execute(db.q("console_user_by_name"), {"username": username}).fetchone() is not None:
        return False
    create_user(conn, username, password, permissions, actor=actor)
    return True


def get_user(conn: psycopg.Connection, user_id: int) -> dict | None:
    """The active user of an id, with their permissions as they are now."""
    return conn.execute(db.q("console_user_get"), {"id": user_id}).fetchone()


def sign_in(conn: psycopg.Connection, username: str, password: str, *, address: str,
            now: datetime | None = None) -> SignIn:
    """Check a user name and password, unless too many sign-ins failed lately (then refuse)."""
    key = {"username": username, "address": address, "window_s": WINDOW_S, "limit": MAX_FAILURES}
    recent = conn.execute(db.q("console_failures_recent"), key).fetchone()
    if recent["n"] >= MAX_FAILURES:
        now = now or datetime.now(timezone.utc)
        ends = recent["oldest"] + timedelta(seconds=WINDOW_S)
        log.info("console sign-in refused: %s failures lately", recent["n"])
        return SignIn(retry_after_s=max(1, int((ends - now).total_seconds()) + 1))
    user = conn.execute(db.q("console_user_by_name"), {"username": username}).fetchone()
    if not _password_ok(user["password_hash"] if user else _UNKNOWN_HASH, password) or user is None:
        conn.execute(db.q("console_failure_insert"), key)
        return SignIn()
    if _hasher.check_needs_rehash(user["password_hash"]):
        with conn.transaction():
            conn.execute(db.q("session_bind_tenant_local"), {"tenant": str(user["tenant_id"])})
            conn.execute(db.q("console_user_rehash"),
                         {"id": user["id"], "password_hash": _hasher.hash(password)})
    conn.execute(db.q("console_failures_clear"), key)
    return SignIn(user={k: user[k] for k in ("id", "tenant_id", "username", "permissions", "time_zone")})


def _password_ok(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False

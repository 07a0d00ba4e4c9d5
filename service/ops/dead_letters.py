"""Events the workers could not process: what is pending, and putting them back."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import psycopg

from service.ops.audit import audit
from service.platform import db

log = logging.getLogger(__name__)


REPLAYABLE_KINDS = ("events", "backfill")


@dataclass
class ReplayOutcome:
    """What a dead-letter replay did; `error` is set when the broker stopped it midway."""

    replayed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    error: str | None = None


def pending_by_tenant(conn: psycopg.Connection, tenant_ids: list[int]) -> dict[int, dict[str, int]]:
    """Dead letters not replayed yet of the tenants named, by tenant and queue name, in one
    statement however many they are (counts only: docs/tenants.md, "Figures of every tenant")."""
    found: dict[int, dict[str, int]] = {}
    for r in conn.execute(db.q("dead_letters_pending_by_tenant"), {"tenants": list(tenant_ids)}):
        found.setdefault(r["tenant_id"], {})[r["queue"]] = r["n"]
    return found


def pending_dead_letters(conn: psycopg.Connection) -> dict[str, int]:
    """The bound tenant's dead letters not replayed yet, by queue name (none without a tenant):
    read under the tenant's own policy, not through the function that looks across tenants."""
    return {r["queue"]: r["n"] for r in conn.execute(db.q("admin_dead_letters_pending_by_queue"))}


def queue_kind(queue_name: str) -> str | None:
    """Return `events` or `backfill` for a queue name ending so, else None."""
    kind = queue_name.rsplit(".", 1)[-1]
    return kind if kind in REPLAYABLE_KINDS else None


def replay_dead_letters(conn: psycopg.Connection, ids: list[int] | None,
                        publish: Callable[[dict, str], None], *, actor: str) -> ReplayOutcome:
    """Put pending dead letters (all, or the given ids) back on their queue.

    `publish(payload, kind)` must return only once the broker holds the message. When it fails,
    the letters published so far are still marked (the caller commits) and `error` says why.
    """
    out = ReplayOutcome()
    rows = conn.execute(db.q("admin_dead_letters_take"), {"ids": ids}).fetchall()
    for row in rows:
        kind = queue_kind(row["queue"])
        if kind is None or not isinstance(row["payload"], dict):
            out.skipped.append(row["id"])
            continue
        try:
            # Back to the tenant whose dead letter it is, whatever the payload says
            # (docs/tenants.md, "Isolation").
            publish(dict(row["payload"], tenant=row["tenant_id"]), kind)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, the rest stays pending
            out.error = f"{exc.__class__.__name__}: {exc}"
            log.warning("dead-letter replay stopped at %s: %s", row["id"], out.error)
            break
        out.replayed.append(row["id"])
    if out.replayed:
        conn.execute(db.q("admin_dead_letters_mark_replayed"), {"ids": out.replayed})
    if out.replayed or out.skipped:
        audit(conn, actor, "dead_letters.replay", "dead_letters", None,
              {"replayed": out.replayed, "skipped": out.skipped, "error": out.error})
    return out

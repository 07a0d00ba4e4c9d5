"""What the queues hold and who consumes them, and replaying dead letters (docs/admin-api.md).

The API's /ops views and the console's ops page (docs/console.md) both come here.
"""
from __future__ import annotations

import logging

from service.ops import dead_letters as ops_dead_letters
from service.platform import db, messaging

log = logging.getLogger(__name__)


class QueuesUnavailable(RuntimeError):
    """The broker (or the embedded queue) cannot be read now; retry later."""


def queue_overview(settings, pool, *, every_tenant: bool = False) -> dict:
    """Per queue: depth, consumers and pending dead letters; and all pending dead letters.

    The queues are every tenant's; the dead letters are the bound tenant's, or with
    `every_tenant` all tenants' (a platform token's view: docs/tenants.md, "Platform tokens")."""
    try:
        stats = messaging.queue_stats(settings, pool.conninfo)
    except Exception as exc:  # noqa: BLE001 - any failure means "the queue is unavailable"
        log.warning("queue unavailable for queue stats: %s", exc.__class__.__name__)
        what = "the embedded queue" if messaging.is_embedded(settings) else "the broker"
        raise QueuesUnavailable(f"{what} is unavailable; retry later") from None
    queues = [{"name": s.name, "depth": s.depth, "consumers": s.consumers, "declared": s.declared}
              for s in stats]
    # One statement whatever the number of tenants (docs/tenants.md, "Figures of every tenant").
    with pool.connection() as conn:
        if every_tenant:
            ids = [r["id"] for r in conn.execute(db.q("tenant_ids"))]
            of_each = list(ops_dead_letters.pending_by_tenant(conn, ids).values())
        else:
            of_each = [ops_dead_letters.pending_dead_letters(conn)]
    pending: dict[str, int] = {}
    for of_tenant in of_each:
        for name, n in of_tenant.items():
            pending[name] = pending.get(name, 0) + n
    for queue in queues:
        queue["dead_letters"] = pending.get(queue["name"], 0)
    return {"queues": queues, "dead_letters": sum(pending.values())}


def replay(pool, publisher, ids: list[int] | None, *, actor: str) -> ops_dead_letters.ReplayOutcome:
    """Put dead-lettered events back on their queue (`ids`, or all pending ones)."""
    def publish(payload: dict, kind: str) -> None:
        webhook_id = payload.get("webhook_id")
        headers = {"webhook-id": webhook_id} if isinstance(webhook_id, str) else None
        publisher.publish(payload, kind=kind, headers=headers)

    with pool.connection() as conn:
        return ops_dead_letters.replay_dead_letters(conn, ids, publish, actor=actor)

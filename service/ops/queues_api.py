"""Ops: queue depths and consumers, dead letters, and their replay. Integrations permission."""
from __future__ import annotations

import logging

from flask_smorest import abort
from marshmallow import fields, validate

from service.platform import db, messaging, tenancy
from service.platform.api import Id, Strict, actor, blueprint, errors
from service.ops import dead_letters as ops_dead_letters
from service.platform.web import RETRY_AFTER_S, services
log = logging.getLogger(__name__)

# Not "ops": that name belongs to the health/metrics blueprint (service/ops/health.py).
blp = blueprint(
    "operations",
    "What the queues hold and who consumes them; events the workers could not process "
    "(dead letters) and putting them back on their queue.",
)

MAX_REPLAY_IDS = 1000  # 20 bytes an id at most: a full list still fits the 64 KiB body limit


class QueueSchema(Strict):
    name = fields.String(required=True)
    depth = fields.Integer(required=True, metadata={"description": "messages ready in the queue"})
    consumers = fields.Integer(required=True, metadata={"description": "workers consuming it"})
    declared = fields.Boolean(
        required=True,
        metadata={"description": "false when the queue does not exist yet (then depth and consumers are 0)"})
    dead_letters = fields.Integer(
        required=True, metadata={"description": "events of this queue dead-lettered and not replayed yet"})


class QueuesSchema(Strict):
    queues = fields.List(fields.Nested(QueueSchema), required=True,
                         metadata={"description": "events, backfill and the broker's dead-letter queue"})
    dead_letters = fields.Integer(required=True,
                                  metadata={"description": "all dead letters not replayed yet"})


class ReplaySchema(Strict):
    ids = fields.List(Id(), validate=validate.Length(max=MAX_REPLAY_IDS),
                      metadata={"description": "dead letters to replay; omit for every pending one"})


class ReplayedSchema(Strict):
    replayed = fields.Integer(required=True, metadata={"description": "dead letters put back on their queue"})
    skipped = fields.Integer(required=True,
                             metadata={"description": "pending ones that belong to no replayable queue"})


def queue_stats(settings, database_url: str) -> list[dict]:
    """Depth and consumers of every queue (nothing is created); 503 when it cannot be read."""
    try:
        stats = messaging.queue_stats(settings, database_url)
    except Exception as exc:  # noqa: BLE001 - any failure means "the queue is unavailable"
        log.warning("queue unavailable for queue stats: %s", exc.__class__.__name__)
        what = "the embedded queue" if messaging.is_embedded(settings) else "the broker"
        abort(503, message=f"{what} is unavailable; retry later",
              headers={"Retry-After": str(RETRY_AFTER_S)})
    return [{"name": s.name, "depth": s.depth, "consumers": s.consumers, "declared": s.declared}
            for s in stats]


@blp.route("/ops/queues")
@errors(blp, 503)
@blp.response(200, QueuesSchema)
def queues():
    """Per queue: depth, consumers and pending dead letters; and all pending dead letters."""
    return queues_answer()


def queues_answer(every_tenant: bool = False) -> dict:
    """The queues (shared by every tenant) with the pending dead letters of the bound tenant,
    or of `every_tenant` (a platform token's view: docs/tenants.md, "Platform tokens")."""
    svc = services()
    stats = queue_stats(svc.settings, svc.pool.conninfo)
    pending: dict[str, int] = {}
    with svc.pool.connection() as conn:
        ids = [r["id"] for r in conn.execute(db.q("tenant_list"))] if every_tenant else [None]
    for tenant_id in ids:
        with tenancy.scope(tenant_id if every_tenant else tenancy.current()), \
                svc.pool.connection() as conn:
            for name, n in ops_dead_letters.pending_dead_letters(conn).items():
                pending[name] = pending.get(name, 0) + n
    for queue in stats:
        queue["dead_letters"] = pending.get(queue["name"], 0)
    return {"queues": stats, "dead_letters": sum(pending.values())}


@blp.route("/ops/dead-letters/replay", methods=["POST"])
@errors(blp, 422, 503)
@blp.arguments(ReplaySchema, required=False)
@blp.response(200, ReplayedSchema)
def replay(data):
    """Put dead-lettered events back on their queue (`ids`, or all pending ones)."""
    svc = services()

    def publish(payload: dict, kind: str) -> None:
        webhook_id = payload.get("webhook_id")
        headers = {"webhook-id": webhook_id} if isinstance(webhook_id, str) else None
        svc.publisher.publish(payload, kind=kind, headers=headers)

    with svc.pool.connection() as conn:
        out = ops_dead_letters.replay_dead_letters(conn, data.get("ids"), publish, actor=actor())
    if out.error:
        abort(503, message=f"the broker stopped the replay after {len(out.replayed)} dead letter(s); "
                           "retry for the rest",
              errors={"replayed": out.replayed}, headers={"Retry-After": str(RETRY_AFTER_S)})
    return {"replayed": len(out.replayed), "skipped": len(out.skipped)}


def register(api) -> None:
    api.register_blueprint(blp)

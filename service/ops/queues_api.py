"""Ops: queue depths and consumers, dead letters, and their replay. Integrations permission."""
from __future__ import annotations

import logging

from flask_smorest import abort
from marshmallow import fields, validate

from service.platform.api import Id, Strict, actor, blueprint, errors
from service.ops import queues as ops_queues
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


@blp.route("/ops/queues")
@errors(blp, 503)
@blp.response(200, QueuesSchema)
def queues():
    """Per queue: depth, consumers and pending dead letters; and all pending dead letters."""
    svc = services()
    try:
        return ops_queues.queue_overview(svc.settings, svc.pool)
    except ops_queues.QueuesUnavailable as exc:
        abort(503, message=str(exc), headers={"Retry-After": str(RETRY_AFTER_S)})


@blp.route("/ops/dead-letters/replay", methods=["POST"])
@errors(blp, 422, 503)
@blp.arguments(ReplaySchema, required=False)
@blp.response(200, ReplayedSchema)
def replay(data):
    """Put dead-lettered events back on their queue (`ids`, or all pending ones)."""
    svc = services()
    out = ops_queues.replay(svc.pool, svc.publisher, data.get("ids"), actor=actor())
    if out.error:
        abort(503, message=f"the broker stopped the replay after {len(out.replayed)} dead letter(s); "
                           "retry for the rest",
              errors={"replayed": out.replayed}, headers={"Retry-After": str(RETRY_AFTER_S)})
    return {"replayed": len(out.replayed), "skipped": len(out.skipped)}


def register(api) -> None:
    api.register_blueprint(blp)

"""The platform's endpoints (docs/tenants.md, "Platform tokens"): tenants, and each tenant's
ops figures without personal data. Only a platform token reaches them (service/access/auth.py)."""
from __future__ import annotations

from flask_smorest import abort
from marshmallow import fields, validate

from service.ops import dead_letters as ops_dead_letters
from service.ops import queues as ops_queues
from service.ops.queues_api import QueuesSchema
from service.platform import db
from service.platform.api import Strict, Text, blueprint, errors
from service.platform.crypto import NotConfigured
from service.platform.web import RETRY_AFTER_S, services
from service.tenants import tenants

blp = blueprint(
    "platform",
    "For platform tokens only: the tenants of the deployment, adding one, and each tenant's "
    "queues, dead letters and rejected webhooks without personal data.",
)

LATEST = 20  # rows of each tenant's dead letters and rejected webhooks shown


class TenantSecretsSchema(Strict):
    client_secret = Text(required=True, min_length=1, max_length=2000)
    webhook_secrets = fields.List(Text(max_length=200), required=True,
                                  validate=validate.Length(min=1, max=10))


class TenantCreateSchema(Strict):
    slug = Text(required=True, min_length=1, max_length=63)
    name = Text(required=True, min_length=1, max_length=200)
    infocaption_base_url = Text(required=True, min_length=1, max_length=500)
    client_id = Text(required=True, min_length=1, max_length=200)
    time_zone = Text(load_default="Europe/Stockholm", max_length=100)
    secrets = fields.Nested(TenantSecretsSchema, required=True,
                            metadata={"description": "kept encrypted; never answered"})


class TenantSchema(Strict):
    id = fields.Integer(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)
    infocaption_base_url = fields.String(allow_none=True)
    client_id = fields.String(allow_none=True)
    time_zone = fields.String(required=True)
    active = fields.Boolean(required=True)


class TenantsSchema(Strict):
    items = fields.List(fields.Nested(TenantSchema), required=True)


class DeadLetterSeenSchema(Strict):
    id = fields.Integer(required=True)
    queue = fields.String(required=True)
    event_type = fields.String(allow_none=True)
    error_kind = fields.String(required=True, metadata={"description": "the error's class, not its text"})
    failed_at = fields.DateTime(required=True)
    replayed_at = fields.DateTime(allow_none=True)


class RejectedSeenSchema(Strict):
    id = fields.Integer(required=True)
    received_at = fields.DateTime(required=True)
    status = fields.Integer(required=True)
    reason = fields.String(required=True)


class TenantOpsSchema(Strict):
    tenant = fields.String(required=True)
    dead_letters_pending = fields.Integer(required=True)
    dead_letters = fields.List(fields.Nested(DeadLetterSeenSchema), required=True)
    rejected_webhooks_kept = fields.Integer(required=True)
    rejected_webhooks = fields.List(fields.Nested(RejectedSeenSchema), required=True)


class PlatformOpsSchema(Strict):
    tenants = fields.List(fields.Nested(TenantOpsSchema), required=True)


@blp.get("/platform/tenants")
@blp.response(200, TenantsSchema)
@errors(blp)
def list_tenants():
    """Every tenant, without its secrets."""
    with services().pool.connection() as conn:
        return {"items": tenants.list_public(conn)}


@blp.post("/platform/tenants")
@blp.arguments(TenantCreateSchema)
@blp.response(201, TenantSchema)
@errors(blp, 409, 422, 503)
def create_tenant(data):
    """Add a tenant; its webhook URL is /webhooks/infocaption/{slug}."""
    svc = services()
    try:
        with svc.pool.connection() as conn:
            new_id = tenants.create(conn, svc.settings, slug=data["slug"], name=data["name"],
                                    infocaption_base_url=data["infocaption_base_url"],
                                    client_id=data["client_id"], secrets=data["secrets"],
                                    time_zone=data["time_zone"])
    except tenants.TenantError as exc:
        code = 409 if "exists already" in str(exc) else 422
        abort(code, message=str(exc))
    except NotConfigured as exc:
        abort(503, message=str(exc))
    with svc.pool.connection() as conn:
        return tenants.public_by_id(conn, new_id)


@blp.get("/platform/queues")
@blp.response(200, QueuesSchema)
@errors(blp, 503)
def platform_queues():
    """The queues every tenant shares (depth, consumers); dead letters of all tenants."""
    svc = services()
    try:
        return ops_queues.queue_overview(svc.settings, svc.pool, every_tenant=True)
    except ops_queues.QueuesUnavailable as exc:
        abort(503, message=str(exc), headers={"Retry-After": str(RETRY_AFTER_S)})


@blp.get("/platform/ops")
@blp.response(200, PlatformOpsSchema)
@errors(blp)
def platform_ops():
    """Each tenant's dead letters and rejected webhooks: ids, times, kinds, never contents."""
    with services().pool.connection() as conn:
        every = tenants.list_public(conn)
        # A fixed number of statements however many tenants there are (docs/tenants.md,
        # "Figures of every tenant").
        named = {"tenants": [t["id"] for t in every]}
        pending = ops_dead_letters.pending_by_tenant(conn, named["tenants"])
        kept = {r["tenant_id"]: r["n"]
                for r in conn.execute(db.q("platform_rejected_webhooks_count"), named)}
        letters = _by_tenant(conn.execute(db.q("platform_dead_letters"), {**named, "limit": LATEST}))
        rejected = _by_tenant(conn.execute(db.q("platform_rejected_webhooks"),
                                           {**named, "limit": LATEST}))
    out = [{
        "tenant": t["slug"],
        "dead_letters_pending": sum(pending.get(t["id"], {}).values()),
        "dead_letters": letters.get(t["id"], []),
        "rejected_webhooks_kept": kept.get(t["id"], 0),
        "rejected_webhooks": rejected.get(t["id"], []),
    } for t in every]
    return {"tenants": out}


def _by_tenant(rows) -> dict[int, list[dict]]:
    """Rows of several tenants (each with its `tenant_id`), as each tenant's list, in order."""
    found: dict[int, list[dict]] = {}
    for row in rows:
        found.setdefault(row.pop("tenant_id"), []).append(row)
    return found


def register(api) -> None:
    api.register_blueprint(blp)

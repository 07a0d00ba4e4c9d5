"""Subscriptions to outgoing events and their delivery log (docs/admin-api.md, "Subscriptions")."""
from __future__ import annotations

from flask_smorest import abort
from marshmallow import fields, validate

from service.events import delivery, subscriptions
from service.platform.api import (Id, Query, Strict, Text, actor, blueprint, errors, paged, paginate,
                                  transaction, window)
from service.platform.web import services

blp = blueprint(
    "subscriptions",
    "Receivers of outgoing events (grant.created, grant.renewed, grant.revoked, grant.deleted, "
    "grant.expiring, grant.expired), signed per Standard Webhooks with the subscription's secret, "
    "which is shown once, when the subscription is created; and each subscription's delivery log.",
)

STATES = ("pending", "delivered", "failed")


class SubscriptionCreateSchema(Strict):
    url = Text(required=True, min_length=1, max_length=2000,
               metadata={"description": "https:// (http:// in demo mode only); not a private address"})
    events = fields.List(fields.String(validate=validate.OneOf(subscriptions.TYPES)), required=True,
                         validate=validate.Length(min=1, max=len(subscriptions.TYPES)))
    description = Text(max_length=1000, load_default="")


class SubscriptionSchema(Strict):
    id = fields.Integer(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    description = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    created_by = fields.String(required=True)


class SubscriptionListedSchema(SubscriptionSchema):
    pending = fields.Integer(required=True, metadata={"description": "deliveries waiting to be sent"})
    failed = fields.Integer(required=True, metadata={"description": "deliveries that failed for good"})
    delivered = fields.Integer(required=True)


class SubscriptionCreatedSchema(SubscriptionSchema):
    secret = fields.String(required=True, metadata={
        "description": "whsec_…: verifies the signatures; shown this once, never again"})


class DeliveryQuery(Query):
    state = fields.String(validate=validate.OneOf(STATES))


class DeliverySchema(Strict):
    id = fields.Integer(required=True)
    event_id = fields.Integer(required=True)
    webhook_id = fields.String(required=True, metadata={"description": "the same on every retry and re-send"})
    type = fields.String(required=True)
    grant_id = fields.Integer(required=True)
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    attempts = fields.Integer(required=True)
    next_attempt_at = fields.DateTime(required=True)
    last_attempt_at = fields.DateTime(required=True, allow_none=True)
    last_status = fields.Integer(required=True, allow_none=True)
    last_error = fields.String(required=True, allow_none=True)
    delivered_at = fields.DateTime(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)


@blp.route("/subscriptions")
@errors(blp)
@blp.response(200, SubscriptionListedSchema(many=True))
@paginate(blp)
@transaction
def list_subscriptions(conn, pagination_parameters=None):
    """List the subscriptions (never their secrets) with how their deliveries stand."""
    limit, offset = window(pagination_parameters)
    return paged(subscriptions.list_subscriptions(conn, limit=limit, offset=offset), pagination_parameters)


@blp.route("/subscriptions", methods=["POST"])
@errors(blp, 422, 503)
@blp.arguments(SubscriptionCreateSchema)
@blp.response(201, SubscriptionCreatedSchema)
@transaction
def create_subscription(conn, data):
    """Subscribe a URL to event types; the answer's `secret` is shown only this once."""
    try:
        return subscriptions.create_subscription(conn, services().settings, data, actor=actor())
    except subscriptions.NotConfigured as exc:
        abort(503, message=str(exc), errors={"ENCRYPTION_KEY": ["not set"]})


@blp.route("/subscriptions/<id:subscription_id>", methods=["DELETE"])
@errors(blp, 404)
@blp.response(204)
@transaction
def delete_subscription(conn, subscription_id):
    """Delete a subscription with its delivery log; nothing more is sent to it."""
    subscriptions.delete_subscription(conn, subscription_id, actor=actor())


@blp.route("/subscriptions/<id:subscription_id>/deliveries")
@errors(blp, 404)
@blp.arguments(DeliveryQuery, location="query", as_kwargs=True)
@blp.response(200, DeliverySchema(many=True))
@paginate(blp)
@transaction
def list_deliveries(conn, subscription_id, state=None, pagination_parameters=None):
    """The delivery log of one subscription, newest first (`?state=failed` for the failed)."""
    limit, offset = window(pagination_parameters)
    page = subscriptions.list_deliveries(conn, subscription_id, state=state, limit=limit, offset=offset)
    return paged(page, pagination_parameters)


@blp.route("/subscriptions/<id:subscription_id>/deliveries/<id:delivery_id>/resend", methods=["POST"])
@errors(blp, 404, 409)
@blp.response(202, DeliverySchema)
@transaction
def resend_delivery(conn, subscription_id, delivery_id):
    """Send a delivered or failed event again (same webhook-id and body), with a fresh retry horizon."""
    return subscriptions.resend_delivery(conn, subscription_id, delivery_id, actor=actor(),
                                         now=delivery.utcnow())


def register(api) -> None:
    api.register_blueprint(blp)

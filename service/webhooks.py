"""POST /webhooks/infocaption: verify, validate, queue durably, answer (CONTRACT section 3)."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from functools import lru_cache

from flask import Blueprint, current_app, jsonify, request
from marshmallow import ValidationError
from psycopg.types.json import Jsonb
from standardwebhooks import Webhook
from werkzeug.exceptions import RequestEntityTooLarge

from service import db
from service.app import MAX_WEBHOOK_BYTES, services
from service.messaging import PublishError
from service.metrics import WEBHOOKS
from service.schemas import parse_event

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# What jsonify(status="accepted") answers, serialised once: the hot path answers it per request.
_ACCEPTED_BODY = b'{"status":"accepted"}\n'
RETRY_AFTER_S = 5


@lru_cache(maxsize=8)
def _verifiers(secrets: tuple[str, ...]) -> tuple[Webhook, ...]:
    return tuple(Webhook(s) for s in secrets)


def verify_signature(body: bytes, headers: dict[str, str], secrets: tuple[str, ...]) -> bool:
    """Tell whether any configured secret signed this body (constant-time, ±300 s window)."""
    for verifier in _verifiers(secrets):
        try:
            verifier.verify(body, headers, json_parse=False)
            return True
        except Exception:  # noqa: BLE001 - any malformed header or body is "not signed"
            continue
    return False


def _kept_headers() -> dict[str, str]:
    keep = ("webhook-id", "webhook-timestamp", "content-type", "content-length", "user-agent")
    return {k: request.headers.get(k, "")[:500] for k in keep if k in request.headers}


def _reject(status: int, reason: str, errors=None, body: bytes | None = None, webhook_id=None):
    """Answer a rejected webhook, keeping it for ops; 503 if even that cannot be stored."""
    WEBHOOKS.labels(outcome=f"rejected_{status}", type="-").inc()
    try:
        with services().pool.connection(timeout=5) as conn:
            conn.execute(
                db.q("insert_rejected_webhook"),
                {
                    "webhook_id": (webhook_id or None) and webhook_id[:200],
                    "status": status,
                    "reason": reason,
                    "errors": Jsonb(errors) if errors is not None else None,
                    "headers": Jsonb(_kept_headers()),
                    "body": body,
                },
            )
    except Exception:  # noqa: BLE001 - the sender must retry: we could not keep it
        log.exception("could not store a rejected webhook (status %s)", status)
        return _unavailable("the rejection could not be recorded")
    log.info("webhook rejected: %s %s", status, reason, extra={"webhook_id": webhook_id, "outcome": "rejected"})
    payload = {"code": status, "message": reason}
    if errors is not None:
        payload["errors"] = errors
    return jsonify(payload), status


def _unavailable(message: str):
    WEBHOOKS.labels(outcome="unavailable", type="-").inc()
    response = jsonify(code=503, message=message)
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


@bp.post("/webhooks/infocaption")
def receive():
    """Take one InfoCaption webhook and queue it durably before answering 202."""
    svc = services()
    webhook_id = request.headers.get("webhook-id", "")
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _reject(413, f"body over {MAX_WEBHOOK_BYTES // 1024} KiB", webhook_id=webhook_id)
    if len(body) > MAX_WEBHOOK_BYTES:
        return _reject(413, f"body over {MAX_WEBHOOK_BYTES // 1024} KiB", webhook_id=webhook_id)

    headers = {k: request.headers.get(k, "") for k in SIGNATURE_HEADERS}
    if not verify_signature(body, headers, svc.settings.webhook_secrets):
        return _reject(401, "missing, malformed or wrong signature, or timestamp outside ±300 s",
                       webhook_id=webhook_id)

    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurd nesting
        return _reject(400, "the body is not JSON", errors={"_body": ["not valid JSON"]},
                       body=body, webhook_id=webhook_id)
    try:
        event = parse_event(parsed)
    except ValidationError as err:
        return _reject(400, "the body does not fit the webhook schema", errors=err.messages,
                       body=body, webhook_id=webhook_id)

    if event is None:
        kind = str(parsed.get("type"))[:50]
        WEBHOOKS.labels(outcome="ignored", type="unknown").inc()
        log.info("webhook of unknown type ignored", extra={"webhook_id": webhook_id, "event": kind})
        return jsonify(status="ignored"), 202

    event["webhook_id"] = webhook_id
    event["received_at"] = datetime.now(timezone.utc).isoformat()
    try:
        svc.publisher.publish(event, headers={"webhook-id": webhook_id}, pack=True)
    except PublishError as exc:
        log.warning("webhook not queued: %s", exc, extra={"webhook_id": webhook_id})
        return _unavailable("the queue is unavailable; retry later")
    WEBHOOKS.labels(outcome="accepted", type=event["type"]).inc()
    return current_app.response_class(_ACCEPTED_BODY, 202, mimetype="application/json")

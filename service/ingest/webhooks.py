"""POST /webhooks/infocaption: verify, validate, queue durably, answer (docs/webhooks.md)."""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import Callable

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import ValidationError
from psycopg.types.json import Jsonb
from standardwebhooks import Webhook
from werkzeug.exceptions import RequestEntityTooLarge

from service.platform import db, tenancy
from service.platform.web import MAX_WEBHOOK_BYTES, RETRY_AFTER_S, services
from service.platform.messaging import PublishError
from service.platform.metrics import WEBHOOKS
from service.ingest import message
from service.ingest.schema import escape_text, escape_tree, parse_event
from service.tenants.tenants import Directory, Tenant, default_tenant

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# What jsonify(status="accepted") answers, serialised once: the hot path answers it per request.
_ACCEPTED_BODY = b'{"status":"accepted"}\n'
MAX_WEBHOOK_ID = 200  # docs/webhooks.md
# Rejections before the signature is checked (401, 413) come from anyone: all are counted
# (cb_webhooks_total), but only this many a minute per web process are kept for ops, so that
# a flood of unsigned requests neither fills rejected_webhooks nor takes the pool's connections.
UNSIGNED_KEPT_PER_MINUTE = 10
SAMPLE_KEY = "competence_bridge.unsigned_sample"


class UnsignedSample:
    """Keep at most `per_minute` unsigned rejections a minute (a fixed window per minute)."""

    def __init__(self, per_minute: int = UNSIGNED_KEPT_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._window = None
        self._kept = 0

    def take(self) -> bool:
        """Tell whether this rejection is kept; counts it in the current minute."""
        window = int(self.clock() // 60)
        with self._lock:
            if window != self._window:
                self._window, self._kept = window, 0
            if self._kept >= self.per_minute:
                return False
            self._kept += 1
            return True


@bp.record_once
def _make_sample(state) -> None:
    state.app.extensions.setdefault(SAMPLE_KEY, UnsignedSample())


DIRECTORY_KEY = "competence_bridge.tenants"


def _count(outcome: str, kind: str = "-") -> None:
    _counter(outcome, kind, g.get("tenant_slug", "-")).inc()


@lru_cache(maxsize=4096)  # outcomes x types x tenants; `labels` costs more than the count
def _counter(outcome: str, kind: str, tenant: str):
    return WEBHOOKS.labels(outcome=outcome, type=kind, tenant=tenant)


def _tenant(slug: str | None) -> Tenant | None:
    """The tenant a webhook URL names (None: unknown or inactive). `default` is configured
    from the environment and needs no database; the others are read through a Directory."""
    svc = services()
    if slug is None:
        return default_tenant(svc.settings)
    extensions = current_app.extensions
    if DIRECTORY_KEY not in extensions:
        extensions.setdefault(DIRECTORY_KEY, Directory(svc.settings, svc.pool))
    found = extensions[DIRECTORY_KEY].get(slug)
    return found if found is not None and found.active else None


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
    keep = ("webhook-id", "webhook-timestamp", "content-type", "content-length", "user-agent",
            "transfer-encoding")
    return {k: escape_text(request.headers.get(k, "")[:500]) for k in keep if k in request.headers}


def _reject(status: int, reason: str, errors=None, body: bytes | None = None, webhook_id=None):
    """Answer a rejected webhook, keeping it for ops; 503 if even that cannot be stored.

    What is kept is escaped (escape_text): the point of a rejection may be text PostgreSQL
    cannot hold. Unsigned rejections are kept only as a sample (UnsignedSample).
    """
    _count(f"rejected_{status}")
    webhook_id = escape_text(webhook_id)[:MAX_WEBHOOK_ID] if webhook_id else None
    errors = escape_tree(errors) if errors is not None else None
    signed = status not in (401, 413)
    if signed or current_app.extensions[SAMPLE_KEY].take():
        try:
            with services().pool.connection(timeout=5) as conn:
                conn.execute(
                    db.q("insert_rejected_webhook"),
                    {
                        "webhook_id": webhook_id,
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
    return jsonify(code=status, message=reason, errors=errors or {}), status


def _read_body() -> bytes:
    """Read the body, at most MAX_WEBHOOK_BYTES; RequestEntityTooLarge beyond, chunked or not.

    Werkzeug stops a body without Content-Length (chunked) at the limit and returns what it
    read, which cannot be told from a body of exactly the limit: read one byte more than
    allowed and refuse the body if it comes.
    """
    request.max_content_length = MAX_WEBHOOK_BYTES + 1
    body = request.get_data(cache=False)
    if len(body) > MAX_WEBHOOK_BYTES:
        raise RequestEntityTooLarge()
    return body


def _unavailable(message: str):
    _count("unavailable")
    response = jsonify(code=503, message=message, errors={})
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


@bp.post("/webhooks/infocaption")
def receive():
    """Take one webhook of the tenant `default` (docs/webhooks.md)."""
    return _receive(None)


@bp.post("/webhooks/infocaption/<slug>")
def receive_for_tenant(slug: str):
    """Take one webhook of the tenant the URL names, checked with its secrets only."""
    return _receive(slug)


def _receive(slug: str | None):
    """Take one InfoCaption webhook and queue it durably before answering 202."""
    svc = services()
    try:
        tenant = _tenant(slug)
    except Exception:  # noqa: BLE001 - the tenant's row could not be read: the sender retries
        log.exception("the tenants could not be read")
        return _unavailable("the service cannot read its tenants; retry later")
    if tenant is None:
        # Kept nowhere (a URL anyone can call), counted; the answer does not say which it was.
        _count("unknown_tenant")
        return jsonify(code=404, message="no such webhook URL", errors={}), 404
    tenancy.bind(tenant.id)  # a rejection is kept for this tenant's ops
    g.tenant_slug = tenant.slug
    webhook_id = request.headers.get("webhook-id", "")
    try:
        body = _read_body()
    except RequestEntityTooLarge:
        return _reject(413, f"body over {MAX_WEBHOOK_BYTES // 1024} KiB", webhook_id=webhook_id)

    headers = {k: request.headers.get(k, "") for k in SIGNATURE_HEADERS}
    if not verify_signature(body, headers, tenant.webhook_secrets):
        return _reject(401, "missing, malformed or wrong signature, or timestamp outside ±300 s",
                       webhook_id=webhook_id)

    if len(webhook_id) > MAX_WEBHOOK_ID or escape_text(webhook_id) != webhook_id:
        return _reject(400, "the webhook-id header does not fit",
                       errors={"webhook-id": [f"at most {MAX_WEBHOOK_ID} characters of text"]},
                       body=body, webhook_id=webhook_id)
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurd nesting
        return _reject(400, "the body is not JSON", errors={"_body": ["not valid JSON"]},
                       body=body, webhook_id=webhook_id)
    try:
        event = parse_event(parsed, raw=body)
    except ValidationError as err:
        return _reject(400, "the body does not fit the webhook schema", errors=err.messages,
                       body=body, webhook_id=webhook_id)

    if event is None:
        kind = str(parsed.get("type"))[:50]
        _count("ignored", "unknown")
        log.info("webhook of unknown type ignored", extra={"webhook_id": webhook_id, "event": kind})
        return jsonify(status="ignored"), 202

    event = message.received(event, webhook_id=webhook_id, received_at=datetime.now(timezone.utc),
                             tenant=tenant.id)
    try:
        # The webhook id is in the event; a packed message carries one tenant's events only.
        svc.publisher.publish(event, pack=True, pack_with=tenant.id)
    except PublishError as exc:
        log.warning("webhook not queued: %s", exc, extra={"webhook_id": webhook_id})
        return _unavailable("the queue is unavailable; retry later")
    _count("accepted", event["type"])
    return current_app.response_class(_ACCEPTED_BODY, 202, mimetype="application/json")


def _answer(description: str, *, retry_after: bool = False) -> dict:
    answer = {"description": description,
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if retry_after:
        answer["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return answer


def document(spec, app) -> None:
    """Describe POST /webhooks/infocaption in the OpenAPI document (docs/webhooks.md)."""
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == f"{bp.name}.receive")
    header = lambda name, description: {  # noqa: E731
        "in": "header", "name": name, "required": True, "description": description,
        "schema": {"type": "string"}}
    spec.path(rule=rule, operations={"post": {
        "tags": ["webhooks"],
        "summary": "Take one InfoCaption webhook (Standard Webhooks signature)",
        "description": (
            "Signed by InfoCaption, not by a bearer token: the signature covers "
            "`{webhook-id}.{webhook-timestamp}.{raw body}` (HMAC-SHA256 with a secret of "
            "INFOCAPTION_WEBHOOK_SECRETS). Types `course.completed`, `course.published`, "
            "`course.unpublished`, `course.deleted`; other types are answered 202 and ignored; "
            "unknown fields are ignored. Rejected webhooks are kept for ops "
            "(GET /api/v1/ops/rejected-webhooks)."),
        "security": [],
        "parameters": [
            header("webhook-id", f"the message id, at most {MAX_WEBHOOK_ID} characters; "
                                 "a repeated id is processed once"),
            header("webhook-timestamp", "Unix seconds; more than 300 s from the server clock is refused"),
            header("webhook-signature", "`v1,<base64 HMAC-SHA256>`, several separated by spaces"),
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["type", "timestamp", "data"],
            "description": f"at most {MAX_WEBHOOK_BYTES // 1024} KiB",
            "properties": {
                "type": {"type": "string", "example": "course.completed"},
                "timestamp": {"type": "string", "format": "date-time"},
                "data": {"type": "object", "description": (
                    "course.completed: resultId, course {id, name, guideType}, user {email, "
                    "firstName, lastName}, passed, score, completedAt (2000-01-01 to one day "
                    "ahead); the other types: course {id, name, guideType}")},
            }}}}},
        "responses": {
            "202": {"description": "accepted (durably queued) or ignored (unknown type)",
                    "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"status": {"type": "string",
                                                                    "enum": ["accepted", "ignored"]}}}}}},
            "400": _answer("not JSON, not the schema, text that is not valid Unicode (lone "
                           "surrogates, NUL), a webhook-id over 200 characters or an implausible "
                           "completedAt; field errors in `errors`"),
            "401": _answer("missing, malformed or wrong signature, or a stale or future timestamp"),
            "413": _answer(f"body over {MAX_WEBHOOK_BYTES // 1024} KiB, with or without Content-Length"),
            "503": _answer("the queue or the database is unreachable; nothing was stored",
                           retry_after=True),
        },
    }})

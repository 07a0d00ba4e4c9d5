"""The two baselines of the ingest measurement, served by gunicorn exactly as the service is.

- `bare_app()`: Flask answering 202 to POST /webhooks/infocaption, nothing else.
- `unqueued_app()`: the service's own app (verify, validate, answer 202) with a publisher that
  queues nothing: not a product, a bound; whatever queues durably costs more than this.
- `reference_app()`: what a straightforward implementation would do: verify the Standard
  Webhooks signature (the same `standardwebhooks` library and secret), then publish the raw
  body to the service's events queue (same quorum queue, declared the same way) with a kombu
  producer in confirm mode (`confirm_publish`), one connection per gunicorn thread, and answer
  202 once the broker has confirmed that message. No schema validation, no metrics, no logs.
"""
from __future__ import annotations

import threading

from flask import Flask, request
from kombu import Connection
from standardwebhooks import Webhook

from service.platform import config as config_mod
from service.platform import messaging

PATH = "/webhooks/infocaption"
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def bare_app() -> Flask:
    app = Flask(__name__)

    @app.post(PATH)
    def receive():
        return "", 202

    return app


def reference_app() -> Flask:
    settings = config_mod.load()
    verifier = Webhook(settings.webhook_secrets[0])
    queue = messaging.topology(settings).queue(messaging.EVENTS)
    with Connection(settings.broker_url) as conn:
        messaging.declare(conn, messaging.topology(settings))
    local = threading.local()

    def producer():
        p = getattr(local, "producer", None)
        if p is None:
            conn = Connection(settings.broker_url, transport_options={"confirm_publish": True})
            conn.ensure_connection(max_retries=3)
            p = local.producer = conn.Producer()
        return p

    app = Flask(__name__)

    @app.post(PATH)
    def receive():
        body = request.get_data()
        try:
            verifier.verify(body, {h: request.headers.get(h, "") for h in HEADERS})
        except Exception:  # noqa: BLE001 - any verification failure
            return "", 401
        try:
            producer().publish(body, exchange=queue.exchange, routing_key=queue.routing_key,
                               content_type="application/json", content_encoding="utf-8",
                               delivery_mode=2, retry=False)
        except Exception:  # noqa: BLE001 - not confirmed: not accepted
            local.producer = None
            return "", 503
        return "", 202

    return app


class _QueuesNothing:
    """A stand-in for service.platform.messaging.Publisher that drops every event (the bound only)."""

    def publish(self, *_args, **_kwargs) -> None:
        return None

    def close(self) -> None:
        return None


def unqueued_app() -> Flask:
    from service.app import create_app

    return create_app(publisher=_QueuesNothing())

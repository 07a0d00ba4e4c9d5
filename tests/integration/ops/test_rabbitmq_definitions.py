"""deploy/rabbitmq/definitions.json, declared on the real RabbitMQ, is what the service declares.

RabbitMQ refuses to re-declare a queue or exchange with other arguments (PRECONDITION_FAILED),
so the service declaring its topology over the imported definitions proves they are the same.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from service.platform import config as config_mod
from service.platform import messaging
from tests.conftest import delete_queues

pytestmark = pytest.mark.integration

DEFINITIONS = Path(__file__).resolve().parents[3] / "deploy" / "rabbitmq" / "definitions.json"


def renamed(prefix: str) -> dict:
    """The definitions with the default prefix replaced, so the test owns what it declares."""
    text = DEFINITIONS.read_text().replace('"competence_bridge', f'"{prefix}')
    return json.loads(text)


def test_definitions_declare_exactly_the_services_topology(broker_url):
    prefix = f"cbdefs_{uuid.uuid4().hex[:10]}"
    settings = config_mod.load({"DEMO": "1", "BROKER_URL": broker_url, "QUEUE_PREFIX": prefix})
    defs = renamed(prefix)
    try:
        with messaging.connection(settings) as broker:
            channel = broker.channel()
            for e in defs["exchanges"]:
                channel.exchange_declare(e["name"], e["type"], durable=e["durable"],
                                         auto_delete=e["auto_delete"], arguments=e["arguments"])
            for q in defs["queues"]:
                channel.queue_declare(q["name"], durable=q["durable"], auto_delete=q["auto_delete"],
                                      arguments=q["arguments"])
            for b in defs["bindings"]:
                channel.queue_bind(b["destination"], b["source"], b["routing_key"], arguments=b["arguments"])

            messaging.declare(broker, messaging.topology(settings))  # raises if anything differs

            # And the wiring works: a message published as the service does lands in the events queue.
            publisher = messaging.Publisher(settings)
            try:
                publisher.publish({"type": "probe"})
            finally:
                publisher.close()
            channel = broker.channel()
            _, depth, _ = channel.queue_declare(f"{prefix}.events", passive=True)
            assert depth == 1
    finally:
        delete_queues(settings)


def test_a_different_argument_is_refused(broker_url):
    """The check above can fail: the broker does refuse a mismatch."""
    prefix = f"cbdefs_{uuid.uuid4().hex[:10]}"
    settings = config_mod.load({"DEMO": "1", "BROKER_URL": broker_url, "QUEUE_PREFIX": prefix})
    queue = renamed(prefix)["queues"][0]
    try:
        with messaging.connection(settings) as broker:
            channel = broker.channel()
            channel.exchange_declare(f"{prefix}.dlx", "fanout", durable=True)
            channel.queue_declare(queue["name"], durable=True, auto_delete=False,
                                  arguments={**queue["arguments"], "x-delivery-limit": 5})
            with pytest.raises(broker.channel_errors, match="PRECONDITION_FAILED"):
                messaging.declare(broker, messaging.topology(settings))
    finally:
        delete_queues(settings)

"""Exchanges, queues, dead-letter topology and publishing with confirms, on both transports.

Production uses RabbitMQ (`BROKER_URL=amqp://…`): durable quorum queues, a dead-letter
exchange, a delivery limit and publisher confirms with mandatory routing, so a publish that
returns has been taken over by the broker. Without `BROKER_URL` kombu's filesystem transport
keeps the queue as files under `./.data/queue/` (the demo and single-machine default).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from kombu import Connection, Exchange, Producer, Queue

from service.config import Settings

log = logging.getLogger(__name__)

EVENTS = "events"
BACKFILL = "backfill"
DEAD = "dead"
DELIVERY_LIMIT = 20


class PublishError(RuntimeError):
    """The broker did not take the message durably; the caller must not acknowledge it."""


@dataclass(frozen=True)
class Topology:
    """Every exchange and queue of the service, named from one prefix."""

    prefix: str
    amqp: bool

    @property
    def exchange(self) -> Exchange:
        return Exchange(self.prefix, type="direct", durable=True)

    @property
    def dead_letter_exchange(self) -> Exchange:
        return Exchange(f"{self.prefix}.dlx", type="fanout", durable=True)

    def _arguments(self) -> dict | None:
        if not self.amqp:
            return None
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": f"{self.prefix}.dlx",
            "x-delivery-limit": DELIVERY_LIMIT,
        }

    def queue(self, kind: str) -> Queue:
        """Return the queue for `events`, `backfill` or `dead`."""
        if kind == DEAD:
            args = {"x-queue-type": "quorum"} if self.amqp else None
            return Queue(
                f"{self.prefix}.{DEAD}",
                exchange=self.dead_letter_exchange,
                routing_key=DEAD,
                durable=True,
                queue_arguments=args,
            )
        return Queue(
            f"{self.prefix}.{kind}",
            exchange=self.exchange,
            routing_key=kind,
            durable=True,
            queue_arguments=self._arguments(),
        )

    @property
    def queues(self) -> list[Queue]:
        return [self.queue(EVENTS), self.queue(BACKFILL), self.queue(DEAD)]


def is_amqp(settings: Settings) -> bool:
    return bool(settings.broker_url) and settings.broker_url.split(":", 1)[0] in ("amqp", "amqps", "pyamqp")


def topology(settings: Settings) -> Topology:
    return Topology(settings.queue_prefix, is_amqp(settings))


def connection(settings: Settings) -> Connection:
    """Open a kombu connection to the configured broker (not yet connected)."""
    if settings.broker_url:
        return Connection(
            settings.broker_url,
            transport_options={"confirm_publish": True},
            heartbeat=30,
            connect_timeout=5,
        )
    folder = settings.data_dir / "queue"
    for sub in ("messages", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return Connection(
        "filesystem://",
        transport_options={
            "data_folder_in": str(folder / "messages"),
            "data_folder_out": str(folder / "messages"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        },
    )


def declare(conn: Connection, topo: Topology) -> None:
    """Declare every exchange, queue and binding (idempotent)."""
    channel = conn.default_channel
    for queue in topo.queues:
        queue(channel).declare()


class Publisher:
    """Publish events durably: confirms + mandatory routing on RabbitMQ; files on disk otherwise.

    One per process; safe to share between threads (publishes are serialised).
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topo = topology(settings)
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._returned: list = []

    def _on_return(self, exception, exchange, routing_key, message):
        self._returned.append((exchange, routing_key))

    def _ensure(self) -> Producer:
        if self._producer is None:
            conn = connection(self.settings)
            conn.ensure_connection(max_retries=1, timeout=5)
            declare(conn, self.topo)
            self._conn = conn
            # Returned (unroutable) messages exist only on AMQP; virtual transports have no
            # basic.return and reject the callback.
            on_return = self._on_return if self.topo.amqp else None
            self._producer = Producer(conn.default_channel, on_return=on_return)
        return self._producer

    def _reset(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - the connection is already broken
                log.debug("closing a broken broker connection failed", exc_info=True)

    def publish(self, body: dict, kind: str = EVENTS, headers: dict | None = None) -> None:
        """Publish one message; return only once the broker holds it durably."""
        queue = self.topo.queue(kind)
        with self._lock:
            for attempt in (1, 2):
                try:
                    producer = self._ensure()
                    self._returned.clear()
                    producer.publish(
                        body,
                        exchange=queue.exchange,
                        routing_key=queue.routing_key,
                        serializer="json",
                        delivery_mode=2,
                        mandatory=self.topo.amqp,
                        headers=headers or {},
                        retry=False,
                    )
                    if self._returned:
                        raise PublishError(f"message to {queue.name} was not routable")
                    return
                except PublishError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any broker failure means "not durable"
                    self._reset()
                    if attempt == 2:
                        raise PublishError(f"broker unavailable: {exc.__class__.__name__}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._reset()

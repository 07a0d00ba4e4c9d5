"""Exchanges, queues, dead-letter topology and publishing with confirms, on both transports.

Production uses RabbitMQ (`BROKER_URL=amqp://…`): durable quorum queues, a dead-letter
exchange, a delivery limit and publisher confirms with mandatory routing, so a publish that
returns has been taken over by the broker. Without `BROKER_URL` kombu's filesystem transport
keeps the queue as files under `./.data/queue/` (the demo and single-machine default).
"""
from __future__ import annotations

import json
import logging
import queue as queue_mod
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import amqp
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
    """Publish events durably; return only once the broker holds them.

    RabbitMQ: a background thread of this process publishes what request threads hand it in
    confirm mode with mandatory routing, and waits for the broker's confirms of a whole group
    at once (a group commit: many requests share one round of quorum-queue writes). Each
    caller is woken with its own message's outcome. Other transports: a plain publish under a
    lock (the filesystem transport has written the file when `publish` returns).

    One per process, made after fork; safe to share between threads.
    """

    GROUP_MAX = 256
    CONFIRM_TIMEOUT_S = 10.0

    def __init__(self, settings: Settings):
        self.settings = settings
        self.topo = topology(settings)
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._inbox: queue_mod.Queue[_Pending] = queue_mod.Queue()
        self._thread: threading.Thread | None = None
        self._closed = False

    # --- the caller's side ---------------------------------------------------------------

    def publish(self, body: dict, kind: str = EVENTS, headers: dict | None = None) -> None:
        """Publish one message; raise PublishError unless the broker holds it durably."""
        if not self.topo.amqp:
            self._publish_plain(body, kind, headers)
            return
        pending = _Pending(body, kind, headers or {})
        with self._lock:
            if self._closed:
                raise PublishError("publisher closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
                self._thread.start()
        self._inbox.put(pending)
        if not pending.done.wait(self.CONFIRM_TIMEOUT_S + 5):
            raise PublishError("no confirm from the broker in time")
        if pending.error is not None:
            raise PublishError(pending.error)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._inbox.put(_STOP)
            thread.join(timeout=15)
        with self._lock:
            self._reset()
            self._closed = False
            self._thread = None

    # --- plain publishing (filesystem transport) -----------------------------------------

    def _publish_plain(self, body: dict, kind: str, headers: dict | None) -> None:
        queue = self.topo.queue(kind)
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._producer is None:
                        conn = connection(self.settings)
                        conn.ensure_connection(max_retries=1, timeout=5)
                        declare(conn, self.topo)
                        self._conn, self._producer = conn, Producer(conn.default_channel)
                    self._producer.publish(
                        body, exchange=queue.exchange, routing_key=queue.routing_key,
                        serializer="json", delivery_mode=2, headers=headers or {}, retry=False,
                    )
                    return
                except Exception as exc:  # noqa: BLE001 - any failure means "not stored"
                    self._reset()
                    if attempt == 2:
                        raise PublishError(f"queue unavailable: {exc.__class__.__name__}: {exc}") from exc

    def _reset(self) -> None:
        conn, self._conn, self._producer = self._conn, None, None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: BLE001 - the connection is already broken
                log.debug("closing a broken broker connection failed", exc_info=True)

    # --- the confirming thread (RabbitMQ) ------------------------------------------------

    def _run(self) -> None:
        link: _ConfirmLink | None = None
        while True:
            try:
                first = self._inbox.get(timeout=5)
            except queue_mod.Empty:
                if link is not None:
                    try:
                        link.conn.heartbeat_check()
                    except Exception:  # noqa: BLE001 - reconnect on next use
                        link.close()
                        link = None
                continue
            if first is _STOP:
                break
            group = [first]
            while len(group) < self.GROUP_MAX:
                try:
                    item = self._inbox.get_nowait()
                except queue_mod.Empty:
                    break
                if item is _STOP:
                    self._inbox.put(_STOP)
                    break
                group.append(item)
            for attempt in (1, 2):
                try:
                    if link is None:
                        link = _ConfirmLink(self.settings, self.topo)
                    link.send(group, self.CONFIRM_TIMEOUT_S)
                    break
                except Exception as exc:  # noqa: BLE001 - every failure means "not durable"
                    if link is not None:
                        link.close()
                        link = None
                    unresolved = [p for p in group if not p.done.is_set()]
                    if attempt == 2 or not unresolved:
                        for p in unresolved:
                            p.fail(f"broker unavailable: {exc.__class__.__name__}: {exc}")
                        break
                    group = unresolved  # the broker never confirmed these: try once more
        if link is not None:
            link.close()
        while True:  # anyone still waiting learns that nothing was published
            try:
                item = self._inbox.get_nowait()
            except queue_mod.Empty:
                break
            if item is not _STOP:
                item.fail("publisher closed")


class _Pending:
    __slots__ = ("body", "kind", "headers", "done", "error", "message_id")

    def __init__(self, body: dict, kind: str, headers: dict):
        self.body, self.kind, self.headers = body, kind, headers
        self.done = threading.Event()
        self.error: str | None = None
        self.message_id = uuid.uuid4().hex

    def ok(self) -> None:
        self.done.set()

    def fail(self, error: str) -> None:
        self.error = error
        self.done.set()


_STOP = object()
# json.dumps(body, separators=(",", ":")) without building an encoder for every message.
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


class _ConfirmLink:
    """One AMQP connection and channel in confirm mode, used by the publisher thread only."""

    def __init__(self, settings: Settings, topo: Topology):
        self.topo = topo
        # No confirm_publish here: this channel is put in confirm mode by hand, so that many
        # messages can be outstanding and confirmed together.
        self.conn = Connection(settings.broker_url, heartbeat=30, connect_timeout=5)
        self.conn.ensure_connection(max_retries=1, timeout=5)
        declare(self.conn, topo)
        self.channel = self.conn.channel()
        self.channel.confirm_select()
        self.seq = 0
        self.routes: dict[str, tuple[str, str, str]] = {}  # kind -> exchange, routing key, queue
        self.outstanding: dict[int, _Pending] = {}
        self.returned: set[str] = set()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self.channel.events["basic_return"].add(self._on_return)

    def route(self, kind: str) -> tuple[str, str, str]:
        """Exchange, routing key and queue name of a kind (kombu entities are costly to build)."""
        found = self.routes.get(kind)
        if found is None:
            queue = self.topo.queue(kind)
            found = self.routes[kind] = (queue.exchange.name, queue.routing_key, queue.name)
        return found

    def _settle(self, tag: int, multiple: bool, ok: bool) -> None:
        if multiple:
            # Tags are issued in increasing order and the dict keeps that order: stop at the
            # first later one instead of scanning everything outstanding on every ack.
            tags = []
            for t in self.outstanding:
                if t > tag:
                    break
                tags.append(t)
        else:
            tags = [tag]
        for t in tags:
            pending = self.outstanding.pop(t, None)
            if pending is None:
                continue
            if not ok:
                pending.fail("the broker refused the message (nack)")
            elif pending.message_id in self.returned:
                self.returned.discard(pending.message_id)
                pending.fail(f"message to {self.route(pending.kind)[2]} was not routable")
            else:
                pending.ok()

    def _on_ack(self, tag, multiple):
        self._settle(tag, multiple, True)

    def _on_nack(self, tag, multiple):
        self._settle(tag, multiple, False)

    def _on_return(self, exc, exchange, routing_key, message):
        self.returned.add(message.properties.get("message_id"))

    def send(self, group: list[_Pending], timeout: float) -> None:
        for pending in group:
            exchange, routing_key, _name = self.route(pending.kind)
            message = amqp.Message(
                _encode_json(pending.body),
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                message_id=pending.message_id,
                application_headers=pending.headers,
            )
            self.seq += 1
            self.outstanding[self.seq] = pending
            self.channel.basic_publish(message, exchange=exchange, routing_key=routing_key,
                                       mandatory=True)
        deadline = time.monotonic() + timeout
        while any(not p.done.is_set() for p in group):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no publisher confirm in time")
            try:
                self.conn.drain_events(timeout=min(left, 1.0))
            except socket.timeout:
                continue

    def close(self) -> None:
        for pending in self.outstanding.values():
            pending.fail("the broker connection was lost before a confirm")
        self.outstanding.clear()
        try:
            self.conn.release()
        except Exception:  # noqa: BLE001 - already broken
            pass

"""Queues: publishing, consuming and their statistics, on both transports (docs/RELIABILITY.md).

Production uses RabbitMQ (`BROKER_URL=amqp://…`): durable quorum queues, a dead-letter
exchange, a delivery limit and publisher confirms with mandatory routing, so a publish that
returns has been taken over by the broker. Without `BROKER_URL` the queue is a table of the
service's own PostgreSQL (the embedded queue, `queue_messages`): a publish is a committed
insert, and a worker deletes a message in the same transaction that applies it, so the
single-machine default keeps the same promise as RabbitMQ through kill -9 of any process.

Workers see one interface whatever the transport (`consumer`): `receive` hands deliveries
to a callback, `claim` runs inside the transaction that applies a batch, `ack` after its
commit. Nothing outside this module imports kombu.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass

import amqp
import amqp.exceptions
import psycopg
from kombu import Connection, Consumer, Exchange, Producer, Queue
from psycopg.types.json import Jsonb

from service.platform import db
from service.platform.config import Settings

log = logging.getLogger(__name__)

EVENTS = "events"
BACKFILL = "backfill"
DEAD = "dead"
DELIVERY_LIMIT = 20


def unpack(body) -> list:
    """Return the events one message carries: itself, or the items of a packed message."""
    # A packed message is a JSON array of events (`Publisher.publish(..., pack=True)`).
    return body if isinstance(body, list) else [body]


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

    def name(self, kind: str) -> str:
        """The queue name of `events`, `backfill` or `dead`."""
        return f"{self.prefix}.{kind}"

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


def is_embedded(settings: Settings) -> bool:
    """Tell whether the queue is the embedded one (a table of the database, no BROKER_URL)."""
    return not settings.broker_url


def topology(settings: Settings) -> Topology:
    return Topology(settings.queue_prefix, is_amqp(settings))


def connection(settings: Settings) -> Connection:
    """Open a kombu connection to the configured broker (not yet connected)."""
    if is_embedded(settings):
        raise ValueError("the embedded queue has no broker connection")
    return Connection(
        settings.broker_url,
        transport_options={"confirm_publish": True},
        heartbeat=30,
        connect_timeout=5,
    )


def declare(conn: Connection, topo: Topology) -> None:
    """Declare every exchange, queue and binding (idempotent)."""
    channel = conn.default_channel
    for queue in topo.queues:
        queue(channel).declare()


class Publisher:
    """Publish events durably; return only once the broker holds them.

    RabbitMQ: each publish is one message on a confirm-mode channel with mandatory routing,
    and the caller waits for that message's confirm. A channel serves one publish at a time;
    concurrent callers take channels from an idle pool (a new connection when none is idle), so
    a process holds as many connections as it has threads publishing at once, and a failure on
    one channel touches only its caller. The embedded queue: one committed insert per event,
    on a connection of `pool` (required then). Other kombu transports: a plain publish, no
    confirms.

    Packed events (`pack=True`, RabbitMQ only) share messages: the callers hand them to one
    sender thread, which publishes what has gathered while its previous message was in flight
    as one message (a JSON array, see `unpack`) and wakes each caller with that confirm. A
    durable quorum-queue message costs the broker and the worker about as much whatever it
    carries, and at the webhook rate that cost decides what the machine can carry
    (bench/README.md, parts 1 and 4).

    One per process, made after fork; safe to share between threads.
    """

    CONFIRM_TIMEOUT_S = 10.0
    PACK_MAX = 64  # packed events per message

    def __init__(self, settings: Settings, pool=None):
        self.settings = settings
        self.topo = topology(settings)
        if is_embedded(settings) and pool is None:
            raise ValueError("the embedded queue publishes through the database: pass the pool")
        self._pool = pool
        self._idle: list[_ConfirmChannel | _PlainChannel] = []  # last in, first out
        self._idle_lock = threading.Lock()
        self._packing = threading.Condition()  # guards the two below
        # (kind, pack_with) -> events waiting for the sender
        self._to_pack: dict[tuple[str, object], list[_Packed]] = {}
        self._sender: threading.Thread | None = None

    def publish(self, body: dict, kind: str = EVENTS, headers: dict | None = None,
                *, pack: bool = False, pack_with: object = None) -> None:
        """Publish one event; raise PublishError unless the broker holds it durably.

        Packed events share a message only with events of the same `pack_with` (the tenant:
        a worker's transaction never mixes tenants, docs/tenants.md)."""
        if self._pool is not None and is_embedded(self.settings):
            self._publish_embedded(body, kind)
            return
        if pack and self.topo.amqp:
            if headers:
                raise ValueError("a packed event travels without headers")
            self._publish_packed(body, (kind, pack_with))
            return
        with self._idle_lock:
            channel = self._idle.pop() if self._idle else None
        for attempt in (1, 2):
            try:
                if channel is None:
                    channel = self._open()
                channel.send(kind, body, headers or {}, self.CONFIRM_TIMEOUT_S)
            except PublishError:  # refused or unroutable: the channel itself is sound
                self._give_back(channel)
                raise
            except Exception as exc:  # noqa: BLE001 - any other failure means "not stored"
                if channel is not None:
                    channel.close()
                    channel = None
                if attempt == 2:
                    raise PublishError(f"broker unavailable: {exc.__class__.__name__}: {exc}") from exc
                # An idle connection may have broken unnoticed (a broker restart): send once
                # more on a new one. Should the first copy have arrived too, its consumer takes
                # the duplicate as it takes a redelivery (docs/RELIABILITY.md).
                continue
            self._give_back(channel)
            return

    def close(self) -> None:
        """Close the idle connections (at shutdown; a later publish opens new ones)."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for channel in idle:
            channel.close()

    def _publish_packed(self, body, key: tuple[str, object]) -> None:
        packed = _Packed(body)
        with self._packing:
            self._to_pack.setdefault(key, []).append(packed)
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(target=self._send_packs, name="publisher",
                                                daemon=True)
                self._sender.start()
            self._packing.notify()
        # The sender settles every event it takes, within two connection attempts and confirm
        # timeouts; the bound only guards against a sender that is gone.
        if not packed.done.wait(4 * self.CONFIRM_TIMEOUT_S):
            with self._packing:
                waiting = self._to_pack.get(key, [])
                if packed in waiting:  # not taken yet: it will not be sent
                    waiting.remove(packed)
            raise PublishError("no confirm from the broker in time")
        if packed.error is not None:
            raise PublishError(packed.error)

    def _send_packs(self) -> None:
        """Publish what has gathered, one message at a time (the sender thread)."""
        while True:
            with self._packing:
                while not self._to_pack:
                    self._packing.wait()
                key, waiting = next(iter(self._to_pack.items()))
                group, rest = waiting[:self.PACK_MAX], waiting[self.PACK_MAX:]
                del self._to_pack[key]
                if rest:  # to the back: every tenant's events take their turn
                    self._to_pack[key] = rest
                kind = key[0]
            error = None
            try:
                self.publish(group[0].body if len(group) == 1 else [p.body for p in group], kind)
            except PublishError as exc:
                error = str(exc)
            except BaseException as exc:  # noqa: BLE001 - settle the callers, then stop
                error = f"the publishing thread failed: {exc.__class__.__name__}"
                raise
            finally:
                for p in group:
                    p.error = error
                    p.done.set()

    def _open(self) -> _ConfirmChannel | _PlainChannel:
        if self.topo.amqp:
            return _ConfirmChannel(self.settings, self.topo)
        return _PlainChannel(self.settings, self.topo)

    def _give_back(self, channel) -> None:
        with self._idle_lock:
            self._idle.append(channel)

    # --- the embedded queue -----------------------------------------------------------------

    def _publish_embedded(self, body, kind: str) -> None:
        try:
            with self._pool.connection(timeout=5) as conn:  # commits on leaving the block
                conn.execute(db.q("inbox_put"), {"queue": self.topo.name(kind), "body": Jsonb(body)})
        except Exception as exc:  # noqa: BLE001 - any failure means "not stored"
            raise PublishError(f"the embedded queue is unavailable: {exc.__class__.__name__}") from exc


class _Packed:
    """An event waiting for the sender thread; `done` once its message is confirmed or failed."""

    __slots__ = ("body", "error", "done")

    def __init__(self, body):
        self.body = body
        self.error: str | None = None
        self.done = threading.Event()


# json.dumps(body, separators=(",", ":")) without building an encoder for every message.
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


class _ConfirmChannel:
    """One AMQP connection and a channel in confirm mode, used by one publish at a time."""

    def __init__(self, settings: Settings, topo: Topology):
        self.topo = topo
        # No confirm_publish: kombu's own confirm wait raises on a returned (unroutable)
        # message before reading its confirm, which would then be taken for the next
        # message's. This channel reads both itself.
        # No heartbeats: no thread serves this connection between publishes. A connection
        # that broke while idle fails the next publish, which reconnects and sends again.
        self.conn = Connection(settings.broker_url, heartbeat=0, connect_timeout=5)
        self.conn.ensure_connection(max_retries=1, timeout=5)
        try:
            declare(self.conn, topo)
            self.channel = self.conn.channel()
            self.channel.confirm_select()
        except BaseException:
            self.close()
            raise
        self.routes: dict[str, tuple[str, str, str]] = {}  # kind -> exchange, routing key, queue
        self._tag = 0  # delivery tag of the message in flight
        self._acked: bool | None = None  # its confirm: None until it arrives, False for a nack
        self._returned = False  # the broker returned it: no queue took it
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

    # RabbitMQ sends a mandatory message's basic.return before its confirm, and confirms each
    # message once; only one is in flight, so a confirm covering its tag is its confirm.
    def _on_ack(self, tag, multiple):
        if tag >= self._tag:
            self._acked = True

    def _on_nack(self, tag, multiple):
        if tag >= self._tag:
            self._acked = False

    def _on_return(self, exc, exchange, routing_key, message):
        self._returned = True

    def send(self, kind: str, body, headers: dict, timeout: float) -> None:
        """Publish one message and wait for its confirm; PublishError if refused or unroutable."""
        exchange, routing_key, queue_name = self.route(kind)
        message = amqp.Message(
            _encode_json(body),
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            application_headers=headers,
        )
        self._tag += 1
        self._acked, self._returned = None, False
        self.channel.basic_publish(message, exchange=exchange, routing_key=routing_key,
                                   mandatory=True)
        deadline = time.monotonic() + timeout
        while self._acked is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no publisher confirm in time")
            self.conn.drain_events(timeout=left)
        if not self._acked:
            raise PublishError("the broker refused the message (nack)")
        if self._returned:
            raise PublishError(f"message to {queue_name} was not routable")

    def close(self) -> None:
        try:
            self.conn.release()
        except Exception:  # noqa: BLE001 - already broken
            log.debug("closing a broken broker connection failed", exc_info=True)


class _PlainChannel:
    """A kombu producer on a transport without publisher confirms, one publish at a time."""

    def __init__(self, settings: Settings, topo: Topology):
        self.topo = topo
        self.conn = connection(settings)
        try:
            self.conn.ensure_connection(max_retries=1, timeout=5)
            declare(self.conn, topo)
            self.producer = Producer(self.conn.default_channel)
        except BaseException:
            self.close()
            raise

    def send(self, kind: str, body, headers: dict, timeout: float) -> None:
        queue = self.topo.queue(kind)
        self.producer.publish(body, exchange=queue.exchange, routing_key=queue.routing_key,
                              serializer="json", delivery_mode=2, headers=headers, retry=False)

    def close(self) -> None:
        try:
            self.conn.release()
        except Exception:  # noqa: BLE001 - already broken
            log.debug("closing a broken broker connection failed", exc_info=True)


# --- consuming ------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One message handed to a worker: its body (a packed one carries several events)."""

    body: object
    tag: object = None  # the kombu Message, or the embedded queue's row id
    claimed: bool = False  # taken for good by the transaction that applied it (embedded queue)


def broker_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the broker connection is gone."""
    from kombu.exceptions import OperationalError as KombuOperationalError

    return (ConnectionError, OSError, KombuOperationalError, amqp.exceptions.ConnectionError,
            amqp.exceptions.ChannelError)


def consumer_errors(settings: Settings) -> tuple[type[BaseException], ...]:
    """Errors of a consumer's own connection: the worker reconnects on them."""
    if is_embedded(settings):
        return (psycopg.OperationalError, psycopg.InterfaceError)
    return broker_errors()


def consumer(settings: Settings, kind: str, on_delivery, *, prefetch: int, database_url: str):
    """The consumer of one queue (a context manager): RabbitMQ's, or the embedded queue's."""
    if is_embedded(settings):
        return EmbeddedConsumer(settings, kind, on_delivery, prefetch=prefetch, database_url=database_url)
    return BrokerConsumer(settings, kind, on_delivery, prefetch=prefetch)


class BrokerConsumer:
    """A kombu consumer; `ack` after the batch committed."""

    def __init__(self, settings: Settings, kind: str, on_delivery, *, prefetch: int):
        self.settings = settings
        self.topo = topology(settings)
        self.queue = self.topo.queue(kind)
        self.name = self.queue.name
        self._on_delivery = on_delivery
        self._prefetch = prefetch
        self._conn: Connection | None = None
        self._consumer: Consumer | None = None

    def __enter__(self) -> "BrokerConsumer":
        self._conn = connection(self.settings)
        try:
            self._conn.ensure_connection(max_retries=3, interval_start=0.5, timeout=5)
            declare(self._conn, self.topo)
            self._consumer = Consumer(self._conn.channel(), queues=[self.queue],
                                      callbacks=[self._on_message], accept=["json"],
                                      prefetch_count=self._prefetch)
            self._consumer.consume()
        except BaseException:
            self._conn.release()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if self._consumer is not None and exc_info[0] is None:
                self._consumer.cancel()
                self._consumer.channel.close()
        finally:
            self._conn.release()

    def _on_message(self, body, message) -> None:
        self._on_delivery(Delivery(body, message))

    def receive(self, timeout: float) -> bool:
        """Hand what arrives within `timeout` to the callback; False if nothing came."""
        try:
            self._conn.drain_events(timeout=timeout)
            return True
        except socket.timeout:
            self._conn.heartbeat_check()
            return False

    def heartbeat(self) -> None:
        """Keep the connection alive during long work: read what the broker sent first (its
        heartbeats; a delivery goes to the callback and waits for the next batch, as with
        `receive`), then send ours when due. py-amqp counts only frames it has read: without the
        read it declares the connection dead (ConnectionForced, "Too many heartbeats missed")
        after two heartbeat intervals of work, however alive the broker is, which stopped every
        backfill in the backfill worker after 60 s (docs/processes.md, "The backfill")."""
        try:
            self._conn.drain_events(timeout=0)
        except socket.timeout:
            pass
        self._conn.heartbeat_check()

    def claim(self, conn, deliveries: list[Delivery]) -> list[Delivery]:
        return deliveries  # the broker holds them until the ack

    def ack(self, deliveries: list[Delivery]) -> None:
        """Acknowledge deliveries whose batch committed (the consuming thread only)."""
        if len(deliveries) > 1 and self.topo.amqp:
            # One ack for the whole batch: every earlier delivery on this channel is in it or
            # was acked before (a worker takes and acks its batches in order).
            deliveries[-1].tag.ack(multiple=True)
        else:
            for delivery in deliveries:  # kombu's virtual transports ignore `multiple`
                delivery.tag.ack()


def consumer_session_name(queue: str) -> str:
    """The application_name of an embedded consumer's session (at most 63 bytes)."""
    return f"cb consumer {queue}".encode()[:63].decode(errors="ignore")


class EmbeddedConsumer:
    """The embedded queue's consumer: rows of `queue_messages`, deleted in the transaction that
    applies them (`claim`), so a message is applied exactly once, and a message that was
    handed out but not applied (the worker was killed) is simply handed out again.

    Its own autocommit session listens for new messages (NOTIFY) and hands out those it does
    not hold yet, counting each delivery; one delivered more than DELIVERY_LIMIT times without a
    commit (it stopped the worker each time) goes to the dead letters, as on RabbitMQ.
    """

    IDLE_POLL_S = 1.0  # a missed notification costs at most this

    def __init__(self, settings: Settings, kind: str, on_delivery, *, prefetch: int,
                 database_url: str):
        self.name = topology(settings).name(kind)
        self._on_delivery = on_delivery
        self._prefetch = prefetch
        self._database_url = database_url
        self._held: set[int] = set()  # handed to the worker, not yet acked
        self._conn: psycopg.Connection | None = None

    def __enter__(self) -> "EmbeddedConsumer":
        self._conn = db.connect(self._database_url, autocommit=True,
                                application_name=consumer_session_name(self.name))
        self._conn.execute(db.q("inbox_listen"))
        return self

    def __exit__(self, *exc_info) -> None:
        self._conn.close()

    def receive(self, timeout: float) -> bool:
        """Hand waiting messages to the callback, waiting up to `timeout` for one to arrive."""
        if self._deliver():
            return True
        if timeout > 0:
            for _ in self._conn.notifies(timeout=min(timeout, self.IDLE_POLL_S), stop_after=1):
                pass
            return self._deliver()
        return False

    def _deliver(self) -> bool:
        room = self._prefetch - len(self._held)
        if room <= 0:
            return False
        rows = self._conn.execute(db.q("inbox_fetch"), {
            "queue": self.name, "held": list(self._held), "limit": room}).fetchall()
        if not rows:
            return False
        exhausted = [r["id"] for r in rows if r["deliveries"] > DELIVERY_LIMIT]
        if exhausted:
            self._conn.execute(db.q("inbox_dead_letter"), {
                "ids": exhausted,
                "error": f"delivered {DELIVERY_LIMIT} times without being applied (the worker "
                         "stopped each time before its commit)"})
            log.warning("%d message(s) of %s dead-lettered after %d deliveries",
                        len(exhausted), self.name, DELIVERY_LIMIT)
        for row in sorted(rows, key=lambda r: r["id"]):
            if row["deliveries"] <= DELIVERY_LIMIT:
                self._held.add(row["id"])
                self._on_delivery(Delivery(row["body"], row["id"]))
        return True

    def heartbeat(self) -> None:
        """Nothing to keep alive: a held message is handed out again only after a restart."""

    def claim(self, conn: psycopg.Connection, deliveries: list[Delivery]) -> list[Delivery]:
        """Take the deliveries for good in the caller's transaction; return those still there."""
        ids = [d.tag for d in deliveries]
        if not ids:
            return []
        taken = {r["id"] for r in conn.execute(db.q("inbox_claim"), {"ids": ids}).fetchall()}
        mine = [d for d in deliveries if d.tag in taken]
        for d in mine:
            d.claimed = True
        return mine

    def ack(self, deliveries: list[Delivery]) -> None:
        """Forget deliveries whose transaction ended; delete those no transaction claimed."""
        unclaimed = [d.tag for d in deliveries if not d.claimed]
        if unclaimed:
            self._conn.execute(db.q("inbox_claim"), {"ids": unclaimed})
        self._held.difference_update(d.tag for d in deliveries)


# --- what ops see -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStat:
    kind: str
    name: str
    depth: int  # messages waiting (RabbitMQ: ready, not the ones delivered and not yet acked)
    consumers: int
    declared: bool = True  # false: the queue does not exist yet (nothing was ever queued there)


def queue_stats(settings: Settings, database_url: str, timeout_s: float = 5.0) -> list[QueueStat]:
    """Depth and consumers of every queue; raises when the queue cannot be read in time."""
    topo = topology(settings)
    if is_embedded(settings):
        kinds = (EVENTS, BACKFILL)  # no dead-letter queue: dead letters go to the database
        names = {kind: topo.name(kind) for kind in kinds}
        sessions = {consumer_session_name(n): n for n in names.values()}
        with db.connect(database_url, connect_timeout=max(2, int(timeout_s))) as conn:
            conn.execute(db.q("obs_statement_timeout"), {"timeout": f"{int(timeout_s * 1000)}ms"})
            depths = {r["queue"]: r["depth"] for r in conn.execute(
                db.q("inbox_depths"), {"queues": list(names.values())}).fetchall()}
            consumers = {sessions[r["name"]]: r["consumers"] for r in conn.execute(
                db.q("inbox_consumers"), {"names": list(sessions)}).fetchall()}
        return [QueueStat(kind, name, depths.get(name, 0), consumers.get(name, 0))
                for kind, name in names.items()]
    stats = []
    broker = connection(settings).clone(connect_timeout=timeout_s)
    try:
        broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s)
        for kind in (EVENTS, BACKFILL, DEAD):
            name = topo.name(kind)
            channel = broker.channel()
            try:
                _, depth, consumers = channel.queue_declare(queue=name, passive=True)
                declared = True
            except broker.channel_errors:
                depth, consumers, declared = 0, 0, False  # nothing was ever queued there
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - the broker closed it after a 404 already
                    pass
            stats.append(QueueStat(kind, name, int(depth), int(consumers), declared))
    finally:
        broker.release()
    return stats


def check(settings: Settings, database_url: str, timeout_s: float) -> None:
    """Raise unless the queue can be reached within the timeout (readiness)."""
    if is_embedded(settings):
        queue_stats(settings, database_url, timeout_s)  # the table answers
        return
    broker = connection(settings).clone(connect_timeout=timeout_s)
    try:
        broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s)
    finally:
        try:
            broker.release()
        except Exception:  # noqa: BLE001
            pass

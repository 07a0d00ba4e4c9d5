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
import uuid
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


PACKED_HEADER = "x-cb-packed"  # a message whose body is a JSON array of this many events


def unpack(body) -> list:
    """The events one message carries: a packed message's array, or the message itself."""
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

    RabbitMQ: a group commit without a thread of its own. A caller puts its event in the
    waiting list; if no group is in flight, it becomes the leader: it takes everything waiting,
    publishes it on the process's confirm-mode connection with mandatory routing (packable
    events share messages, see `publish`), waits for the broker's confirms, wakes the others
    with their outcome and hands the lead to the first one still waiting. So under load many
    requests share one round of quorum-queue writes, and no request pays a hand-over to another
    thread. (One group in flight packs the most events per message: under an open load that
    costs the least CPU in web and broker; bench/ measured more groups in flight as slower.)
    The embedded queue: one committed insert per event, on a connection of `pool` (required
    then). Other kombu transports: a plain publish under a lock.

    One per process, made after fork; safe to share between threads.
    """

    GROUP_MAX = 512  # events one leader publishes at once
    PACK_MAX = 64  # packable events per message
    CONFIRM_TIMEOUT_S = 10.0

    def __init__(self, settings: Settings, pool=None):
        self.settings = settings
        self.topo = topology(settings)
        if is_embedded(settings) and pool is None:
            raise ValueError("the embedded queue publishes through the database: pass the pool")
        self._pool = pool
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._mutex = threading.Lock()  # guards everything below
        self._waiting: list[_Pending] = []
        self._leading = False  # a group is in flight
        self._link: _ConfirmLink | None = None  # used by the leader only
        self._closed = False

    # --- the caller's side ---------------------------------------------------------------

    def publish(self, body: dict, kind: str = EVENTS, headers: dict | None = None,
                *, pack: bool = False) -> None:
        """Publish one event; raise PublishError unless the broker holds it durably.

        `pack`: on RabbitMQ the event may travel in one message with other events published
        at the same moment (the body is then a JSON array of events, see `unpack`); the
        broker's cost of a durable quorum-queue message is shared by all of them. `headers`
        are not sent with a packed event.
        """
        if self._pool is not None and is_embedded(self.settings):
            self._publish_embedded(body, kind)
            return
        if not self.topo.amqp:
            self._publish_plain(body, kind, headers)
            return
        pending = _Pending(body, kind, headers or {}, pack)
        if self._enqueue(pending) or self._await(pending):
            self._lead(pending)
        if not pending.settled:
            raise PublishError("the publishing leader stopped before this event was sent")
        if pending.error is not None:
            raise PublishError(pending.error)

    def close(self) -> None:
        with self._mutex:
            self._closed = True
        while True:
            with self._mutex:
                if not self._leading:
                    link, self._link = self._link, None
                    self._closed = False
                    break
            time.sleep(0.01)
        if link is not None:
            link.close()
        with self._lock:
            self._reset()

    # --- the embedded queue -----------------------------------------------------------------

    def _publish_embedded(self, body, kind: str) -> None:
        try:
            with self._pool.connection(timeout=5) as conn:  # commits on leaving the block
                conn.execute(db.q("inbox_put"), {"queue": self.topo.name(kind), "body": Jsonb(body)})
        except Exception as exc:  # noqa: BLE001 - any failure means "not stored"
            raise PublishError(f"the embedded queue is unavailable: {exc.__class__.__name__}") from exc

    # --- plain publishing (other kombu transports) -------------------------------------------

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

    # --- the group commit (RabbitMQ) --------------------------------------------------------

    def _enqueue(self, pending: _Pending) -> bool:
        """Add an event to the waiting list; True if its caller leads (nothing in flight)."""
        with self._mutex:
            if self._closed:
                raise PublishError("publisher closed")
            self._waiting.append(pending)
            lead, self._leading = not self._leading, True
            return lead

    def _await(self, pending: _Pending) -> bool:
        """Wait to be woken once: settled by a leader (False) or handed the lead (True)."""
        if not pending.wake.acquire(timeout=self.CONFIRM_TIMEOUT_S + 5):
            with self._mutex:
                if pending in self._waiting and not pending.lead:  # in no group yet: give up
                    self._waiting.remove(pending)
                    raise PublishError("no confirm from the broker in time")
            # A leader holds it (its send is bounded by the confirm timeout) or has just settled
            # it or handed it the lead: the release follows.
            pending.wake.acquire()
        return pending.lead

    def _lead(self, pending: _Pending) -> None:
        """Publish groups until the leader's own event is settled, then hand the lead on."""
        try:
            while not pending.settled:  # more than GROUP_MAX may wait before it
                with self._mutex:
                    group = self._waiting[:self.GROUP_MAX]
                    del self._waiting[:self.GROUP_MAX]
                try:
                    self._send(group)
                except BaseException:  # the thread is being stopped: nothing here was confirmed
                    for p in (*group, pending):
                        if not p.settled:
                            p.fail("the publishing thread stopped before a confirm")
                    raise
                finally:
                    for other in group:
                        if other is not pending:
                            other.wake.release()
        finally:
            with self._mutex:
                if self._waiting:
                    nxt = self._waiting[0]
                    nxt.lead = True
                    nxt.wake.release()
                else:
                    self._leading = False

    def _send(self, group: list[_Pending]) -> None:
        """Publish a group and settle every event in it, reconnecting once if needed."""
        for attempt in (1, 2):
            try:
                if self._link is None:
                    self._link = _ConfirmLink(self.settings, self.topo)
                self._link.send(group, self.CONFIRM_TIMEOUT_S, self.PACK_MAX)
                return
            except Exception as exc:  # noqa: BLE001 - every failure means "not durable"
                if self._link is not None:
                    self._link.close()
                    self._link = None
                unresolved = [p for p in group if not p.settled]
                if attempt == 2 or not unresolved:
                    for p in unresolved:
                        p.fail(f"broker unavailable: {exc.__class__.__name__}: {exc}")
                    return
                group = unresolved  # the broker never confirmed these: try once more


class _Pending:
    """One event waiting for the broker; settled (ok or failed) by the leader that sent it."""

    __slots__ = ("body", "kind", "headers", "pack", "settled", "error", "lead", "wake")

    def __init__(self, body: dict, kind: str, headers: dict, pack: bool = False):
        self.body, self.kind, self.headers, self.pack = body, kind, headers, pack
        self.settled = False
        self.error: str | None = None
        self.lead = False  # handed the lead of the next group
        # Held from the start; released once, by the leader that settles this event or hands
        # it the lead (a plain lock is the cheapest way to wake one thread).
        self.wake = threading.Lock()
        self.wake.acquire()

    def ok(self) -> None:
        self.settled = True

    def fail(self, error: str) -> None:
        self.error = error
        self.settled = True


# json.dumps(body, separators=(",", ":")) without building an encoder for every message.
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


class _ConfirmLink:
    """One AMQP connection and channel in confirm mode, used by the publisher thread only."""

    def __init__(self, settings: Settings, topo: Topology):
        self.topo = topo
        # No confirm_publish here: this channel is put in confirm mode by hand, so that many
        # messages can be outstanding and confirmed together.
        # No heartbeats: no thread serves this connection between publishes. A connection
        # that broke while idle fails the next publish, which reconnects and sends again.
        self.conn = Connection(settings.broker_url, heartbeat=0, connect_timeout=5)
        self.conn.ensure_connection(max_retries=1, timeout=5)
        declare(self.conn, topo)
        self.channel = self.conn.channel()
        self.channel.confirm_select()
        self.seq = 0
        self.routes: dict[str, tuple[str, str, str]] = {}  # kind -> exchange, routing key, queue
        self.outstanding: dict[int, tuple[str, list[_Pending]]] = {}  # tag -> message id, events
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
            sent = self.outstanding.pop(t, None)
            if sent is None:
                continue
            message_id, pendings = sent
            if not ok:
                error = "the broker refused the message (nack)"
            elif message_id in self.returned:
                self.returned.discard(message_id)
                error = f"message to {self.route(pendings[0].kind)[2]} was not routable"
            else:
                error = None
            for pending in pendings:
                if error is None:
                    pending.ok()
                else:
                    pending.fail(error)

    def _on_ack(self, tag, multiple):
        self._settle(tag, multiple, True)

    def _on_nack(self, tag, multiple):
        self._settle(tag, multiple, False)

    def _on_return(self, exc, exchange, routing_key, message):
        self.returned.add(message.properties.get("message_id"))

    def _publish(self, kind: str, payload: bytes, headers: dict, pendings: list[_Pending]) -> None:
        exchange, routing_key, _name = self.route(kind)
        message_id = uuid.uuid4().hex
        message = amqp.Message(
            payload,
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            message_id=message_id,
            application_headers=headers,
        )
        self.seq += 1
        self.outstanding[self.seq] = (message_id, pendings)
        self.channel.basic_publish(message, exchange=exchange, routing_key=routing_key,
                                   mandatory=True)

    def send(self, group: list[_Pending], timeout: float, pack_max: int = 1) -> None:
        """Publish a group (packable events of one kind share messages of up to `pack_max`)
        and wait until the broker has confirmed or refused every message of it."""
        packs: dict[str, list[_Pending]] = {}
        for pending in group:
            if pending.pack and pack_max > 1:
                pack = packs.setdefault(pending.kind, [])
                pack.append(pending)
                if len(pack) >= pack_max:
                    self._send_pack(packs.pop(pending.kind))
            else:
                self._publish(pending.kind, _encode_json(pending.body), pending.headers, [pending])
        for pack in packs.values():
            self._send_pack(pack)
        deadline = time.monotonic() + timeout
        while any(not p.settled for p in group):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no publisher confirm in time")
            try:
                self.conn.drain_events(timeout=min(left, 1.0))
            except socket.timeout:
                continue

    def _send_pack(self, pack: list[_Pending]) -> None:
        if len(pack) == 1:
            self._publish(pack[0].kind, _encode_json(pack[0].body), {}, pack)
        else:
            self._publish(pack[0].kind, _encode_json([p.body for p in pack]),
                          {PACKED_HEADER: len(pack)}, pack)

    def close(self) -> None:
        for _message_id, pendings in self.outstanding.values():
            for pending in pendings:
                pending.fail("the broker connection was lost before a confirm")
        self.outstanding.clear()
        try:
            self.conn.release()
        except Exception:  # noqa: BLE001 - already broken
            pass


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

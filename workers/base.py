"""One base class for every queue consumer: batches, ack after commit, retry, dead letters.

A subclass only says what a batch means (`handle`). The base class, on either transport
(`messaging.consumer`: RabbitMQ, or the embedded queue in PostgreSQL):
- collects up to `batch_size` events (a packed message counts its events), or what arrived
  within `batch_wait_ms` of the first (plus what is already waiting, up to `batch_size`), and
  unpacks packed messages (`messaging.unpack`);
- runs `handle` for the batch in one transaction, in which the transport claims the batch
  (the embedded queue deletes its rows there), and acks only after the commit;
- retries transient database errors (connection lost, serialization failure, deadlock, server
  shutting down: `is_transient`, by SQLSTATE class) with capped exponential backoff, and never
  dead-letters for them;
- on any other error (a data exception, an integrity violation, a program limit, a bug)
  decides each event alone (a savepoint each) so that only the poison event goes to the dead
  letters, with its error and a form of it that can always be stored, and the rest of the
  batch still commits. No single event stops the worker.

While one batch commits (in a helper thread, waiting on PostgreSQL most of the time), the
consuming thread reads the next one from the broker; batches still commit one at a time and in
order, each is acked only after its commit, and only the consuming thread uses the broker
connection. (A subclass that replaces `flush` is run without this overlap.)
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from service.platform import db, messaging, tenancy
from service.platform.config import Settings
from service.platform.messaging import Delivery
from service.platform.metrics import DEAD_LETTERS

log = logging.getLogger(__name__)

# SQLSTATE classes that say "try again later": 08 connection exception, 40 transaction rollback
# (serialization failure, deadlock), 53 insufficient resources, 57 operator intervention
# (shutdown, cannot connect now), 58 system error. Every other class is about the statement or
# its data (22 data exception, 23 integrity, 42 syntax or access, 54 program limit, XX
# internal): the same event fails the same way again.
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
BACKOFF_FIRST_S = 0.1
BACKOFF_CAP_S = 5.0
MAX_STORED_ERROR = 4000
MAX_STORED_RAW = 65536


def is_transient(exc: BaseException) -> bool:
    """Tell whether an error is worth retrying the same batch for."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, psycopg.Error):
        if exc.sqlstate is None:  # raised by the client: the connection is lost or unusable
            return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
        return exc.sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
    return False


def storable(value):
    """`value` with every string made storable as PostgreSQL text and JSON: lone surrogates and
    other characters UTF-8 cannot encode become backslash escapes, NUL becomes `\\x00`."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {storable(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


class BatchWorker:
    """Consume one queue in batches. Subclasses set `kind` and implement `handle`."""

    kind: str = messaging.EVENTS

    def __init__(self, settings: Settings, pool: ConnectionPool, *, batch_size: int | None = None,
                 batch_wait_ms: int | None = None):
        self.settings = settings
        self.pool = pool
        self.batch_size = batch_size or settings.batch_size
        self.batch_wait_s = (batch_wait_ms if batch_wait_ms is not None else settings.batch_wait_ms) / 1000
        self.topo = messaging.topology(settings)
        self.stopping = threading.Event()
        self._buffer: list[Delivery] = []
        self._buffered_events = 0  # events in _buffer: a packed message carries several
        self._source = None  # the consumer of the queue (messaging.consumer), while connected
        self._owner: threading.Thread | None = None  # the thread that uses the broker connection
        self._inflight: tuple[Future, list[Delivery]] | None = None

    # --- what a subclass says ---------------------------------------------------------------

    def handle(self, conn: psycopg.Connection, bodies: list[dict]) -> object:
        """Apply a batch inside the caller's transaction and return its outcome; raise to refuse it."""
        raise NotImplementedError

    def after_commit(self, bodies: list[dict], outcomes: list) -> None:
        """Hook run after a batch committed (metrics, logs), with what `handle` returned for it
        (one outcome, or one per event when the batch was decided event by event)."""

    # --- the loop -----------------------------------------------------------------------------

    def stop(self, *_args) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> None:
        """Consume until stopped, reconnecting to the queue when it goes away."""
        name = self.topo.name(self.kind)
        self._owner = threading.current_thread()
        committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.kind}-commit")
        try:
            self._run(committer)
        finally:
            committer.shutdown(wait=True)
        log.info("worker for %s stopped", name)

    def _run(self, committer: ThreadPoolExecutor) -> None:
        self._committer = committer
        lost = messaging.consumer_errors(self.settings)
        while not self.stopping.is_set():
            try:
                with messaging.consumer(self.settings, self.kind, self._on_delivery,
                                        prefetch=self.batch_size * 2,
                                        database_url=self.pool.conninfo) as source:
                    self._source = source
                    log.info("consuming %s", source.name)
                    self._consume(source)
            except lost as exc:
                self._source = None
                self._take_buffer()  # dropped unacked: delivered again
                self._abandon_inflight()  # its commit stands; its redelivery is dropped as a duplicate
                log.warning("queue connection lost (%s); reconnecting", exc.__class__.__name__)
                self._sleep(1.0)

    def _on_delivery(self, delivery: Delivery) -> None:
        self._buffer.append(delivery)
        self._buffered_events += len(messaging.unpack(delivery.body))

    def heartbeat(self) -> None:
        """Keep the queue connection alive during long work (the consuming thread only)."""
        source = self._source
        if source is not None and threading.current_thread() is (self._owner or threading.current_thread()):
            source.heartbeat()

    def ack(self, deliveries: list[Delivery]) -> None:
        """Acknowledge deliveries whose work is done (the consuming thread only)."""
        if deliveries:
            self._source.ack(deliveries)

    def _take_buffer(self) -> list[Delivery]:
        """Take every buffered delivery (the next batch starts empty)."""
        batch, self._buffer, self._buffered_events = self._buffer, [], 0
        return batch

    def _consume(self, source) -> None:
        overlap = type(self).flush is BatchWorker.flush
        first_at = None
        while not self.stopping.is_set():
            self._settle(wait=False)
            if self._buffer and first_at is None:
                first_at = time.monotonic()
            if self._buffer:
                left = self.batch_wait_s - (time.monotonic() - first_at)
                if self._buffered_events >= self.batch_size or left <= 0:
                    self._take_waiting(source)
                    if overlap:
                        self._settle(wait=True)  # one batch in flight: commits stay in order
                        self._start_commit()
                    else:
                        self.flush()
                    first_at = None
                    continue
                timeout = max(left, 0.0005)
            else:
                timeout = 1.0
            if self._inflight is not None:
                timeout = min(timeout, 0.002)  # ack the batch in flight soon after its commit
            source.receive(timeout)
        self._settle(wait=True)
        if self._buffer:
            self.flush()

    def _start_commit(self) -> None:
        """Hand the buffered batch to the committing thread."""
        batch = self._take_buffer()
        self._inflight = (self._committer.submit(self._commit, batch), batch)

    def _settle(self, *, wait: bool) -> None:
        """Ack the batch in flight once it has committed (waiting for it when `wait`)."""
        if self._inflight is None:
            return
        future, batch = self._inflight
        while wait and not future.done():
            try:
                future.result(timeout=1.0)
            except TimeoutError:
                self.heartbeat()  # a long retry must not look like a dead consumer
            except Exception:  # noqa: BLE001 - raised below, from the same future
                break
        if not future.done():
            return
        self._inflight = None
        dead = future.result()  # a failure to commit is raised here, in the consuming thread
        self.ack(batch)
        if dead:
            log.warning("%d event(s) dead-lettered", dead)

    def _abandon_inflight(self) -> None:
        """The channel is gone: let the batch in flight finish, but do not ack it."""
        if self._inflight is None:
            return
        future, _batch = self._inflight
        self._inflight = None
        try:
            future.result()
        except messaging.consumer_errors(self.settings):
            pass

    def _take_waiting(self, source) -> None:
        """Add what is already waiting on the connection to the batch, up to its size.

        Under a backlog the wait is over long before a batch is full (reading a message costs
        tens of microseconds), so batches would stay small and each pay a commit; messages that
        have already arrived cost no extra latency to include.
        """
        while self._buffered_events < self.batch_size and source.receive(0):
            pass

    @staticmethod
    def _split(batch: list[Delivery]) -> tuple[list[dict], list[tuple[object, str]]]:
        """The events of a batch's messages (packed ones unpacked), and those that are not
        JSON objects (dead-lettered with that reason)."""
        bodies, poison = [], []
        for d in batch:
            for body in messaging.unpack(d.body):
                if isinstance(body, dict):
                    bodies.append(body)
                else:
                    poison.append((body, "the message is not a JSON object"))
        return bodies, poison

    def flush(self) -> None:
        """Process the buffered batch: commit, then ack."""
        batch = self._take_buffer()
        dead = self._commit(batch)
        self.ack(batch)
        if dead:
            log.warning("%d event(s) dead-lettered", dead)

    def _commit(self, batch: list[Delivery]) -> int:
        """Commit the batch, retrying transient errors; return how many were dead-lettered.

        Each tenant's messages are committed in a transaction of their own, bound to that
        tenant (docs/tenants.md): no transaction mixes tenants. A group committed before a
        later one fails is delivered again with it and taken as a redelivery."""
        dead = 0
        for tenant, group in self._by_tenant(batch).items():
            with tenancy.scope(tenant):
                dead += self._retrying(lambda: self._commit_once(group))
        return dead

    @staticmethod
    def _by_tenant(batch: list[Delivery]) -> dict[int, list[Delivery]]:
        """The batch's messages by tenant, in the order each tenant first comes (a packed
        message is one tenant's; what names none is the `default` tenant's)."""
        groups: dict[int, list[Delivery]] = {}
        for d in batch:
            first = next(iter(messaging.unpack(d.body)), None)
            tenant = tenancy.of_message(first) if isinstance(first, dict) else tenancy.DEFAULT_ID
            groups.setdefault(tenant, []).append(d)
        return groups

    def _commit_once(self, batch: list[Delivery]) -> int:
        with self.pool.connection() as conn:
            try:
                with conn.transaction():
                    bodies, poison = self._split(self._claim(conn, batch))
                    outcome = self.handle(conn, bodies)
                    for body, error in poison:
                        self.dead_letter(conn, body, error)
            except Exception as exc:  # noqa: BLE001 - sorted below
                if is_transient(exc):
                    raise
                log.warning("batch of %d message(s) failed (%s); deciding each event alone",
                            len(batch), exc.__class__.__name__)
                return self._one_by_one(conn, batch)
        self._after_commit(bodies, [outcome])
        return len(poison)

    def reject(self, delivery: Delivery, error: str) -> None:
        """Dead-letter a message that cannot be processed at all, then acknowledge it."""
        def work() -> None:
            with self.pool.connection() as conn, conn.transaction():
                for d in self._claim(conn, [delivery]):
                    self.dead_letter(conn, d.body, error)
        with tenancy.scope(next(iter(self._by_tenant([delivery])))):
            self._retrying(work)
        self.ack([delivery])

    def _retrying(self, work):
        """Run `work` until it succeeds or fails for a reason that is not transient."""
        delay = BACKOFF_FIRST_S
        attempt = 0
        while True:
            attempt += 1
            try:
                return work()
            except Exception as exc:  # noqa: BLE001
                if not is_transient(exc):
                    raise
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("transient database error (%s), attempt %d; retrying in %.1fs",
                                exc.__class__.__name__, attempt, delay)
                self._sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP_S)
                if self.stopping.is_set() and attempt > 3:
                    # Not acked: the queue delivers the batch again after restart.
                    raise SystemExit("stopping with an uncommitted batch") from exc

    def _claim(self, conn: psycopg.Connection, batch: list[Delivery]) -> list[Delivery]:
        """The deliveries of `batch` this transaction takes (all, but on the embedded queue
        those another worker applied meanwhile)."""
        source = self._source
        return source.claim(conn, batch) if source is not None else batch

    def _after_commit(self, bodies: list[dict], outcomes: list) -> None:
        try:
            self.after_commit(bodies, outcomes)
        except Exception:  # noqa: BLE001 - the batch is committed; a report must not stop the worker
            log.exception("after_commit of %d event(s) failed", len(bodies))

    def _one_by_one(self, conn: psycopg.Connection, batch: list[Delivery]) -> int:
        good, outcomes = [], []
        with conn.transaction():
            bodies, dead = self._split(self._claim(conn, batch))
            for body in bodies:
                try:
                    with conn.transaction():
                        outcomes.append(self.handle(conn, [body]))
                    good.append(body)
                except Exception as exc:  # noqa: BLE001
                    if is_transient(exc):
                        raise
                    dead.append((body, f"{exc.__class__.__name__}: {exc}"))
            for body, error in dead:
                self.dead_letter(conn, body, error)
        self._after_commit(good, outcomes)
        return len(dead)

    def dead_letter(self, conn: psycopg.Connection, body, error: str) -> None:
        """Keep an event that cannot be processed, with its error, for replay.

        The event is stored with its strings escaped where PostgreSQL cannot hold them (see
        `storable`); should even that fail, as its escaped text."""
        payload = storable(body) if isinstance(body, dict) else {"raw": ascii(body)[:MAX_STORED_RAW]}
        error = storable(error)[:MAX_STORED_ERROR]
        webhook_id = payload.get("webhook_id")
        event_type = payload.get("type")
        row = {
            "queue": self.topo.name(self.kind),
            "webhook_id": webhook_id[:200] if isinstance(webhook_id, str) else None,
            "event_type": event_type[:200] if isinstance(event_type, str) else None,
            "payload": Jsonb(payload), "error": error,
        }
        try:
            with conn.transaction():
                conn.execute(db.q("insert_dead_letter"), row)
        except Exception as exc:  # noqa: BLE001 - sorted below
            if is_transient(exc):
                raise
            conn.execute(db.q("insert_dead_letter"), dict(
                row, payload=Jsonb({"raw": ascii(body)[:MAX_STORED_RAW]}),
                error=f"{error} (stored as text: {exc.__class__.__name__})"[:MAX_STORED_ERROR]))
        DEAD_LETTERS.labels(queue=self.kind).inc()
        self.report_dead_letter(payload, error)

    def report_dead_letter(self, payload: dict, error: str) -> None:
        try:
            import sentry_sdk

            with sentry_sdk.new_scope() as scope:
                scope.set_tag("queue", self.kind)
                scope.set_tag("event_type", str(payload.get("type", "-")))
                scope.set_extra("webhook_id", payload.get("webhook_id"))
                sentry_sdk.capture_message(f"event dead-lettered: {error}", level="error")
        except Exception:  # noqa: BLE001 - reporting must never stop the worker
            log.debug("sentry report failed", exc_info=True)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping.is_set() and time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))
            # Only the consuming thread may use the connection (it heartbeats while it waits).
            try:
                self.heartbeat()
            except Exception:  # noqa: BLE001 - a dead connection shows on the next receive
                pass


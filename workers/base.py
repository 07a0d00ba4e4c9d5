"""One base class for every queue consumer: batches, ack after commit, retry, dead letters.

A subclass only says what a batch means (`handle`). The base class:
- collects up to `batch_size` events (a packed message counts its events), or what arrived
  within `batch_wait_ms` of the first (plus what is already waiting on the connection, up to
  `batch_size`), and unpacks packed messages (`messaging.unpack`);
- runs `handle` for the batch in one transaction and acks only after the commit (one
  multiple-ack for the whole batch);
- retries transient database errors (connection lost, serialization failure, deadlock) with
  capped exponential backoff, and never dead-letters for them;
- on any other error decides each event alone (a savepoint each) so that only the poison
  event goes to the dead letters, with its error, and the rest of the batch still commits.

While one batch commits (in a helper thread, waiting on PostgreSQL most of the time), the
consuming thread reads the next one from the broker; batches still commit one at a time and in
order, each is acked only after its commit, and only the consuming thread uses the broker
connection. (A subclass that replaces `flush` is run without this overlap.)
"""
from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
from kombu import Connection, Consumer
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from service import db, messaging
from service.config import Settings
from service.metrics import DEAD_LETTERS

log = logging.getLogger(__name__)

TRANSIENT = (
    psycopg.OperationalError,  # connection lost, server restarting, admin shutdown
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    PoolTimeout,
)
BACKOFF_FIRST_S = 0.1
BACKOFF_CAP_S = 5.0


def is_transient(exc: BaseException) -> bool:
    """Tell whether an error is worth retrying the same batch for."""
    return isinstance(exc, TRANSIENT)


@dataclass
class Delivery:
    body: object
    message: object


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
        self._broker: Connection | None = None
        self._owner: threading.Thread | None = None  # the thread that uses the broker connection
        self._inflight: tuple[Future, list[Delivery]] | None = None

    # --- what a subclass says ---------------------------------------------------------------

    def handle(self, conn: psycopg.Connection, bodies: list[dict]) -> None:
        """Apply a batch inside the caller's transaction; raise to refuse it."""
        raise NotImplementedError

    def after_commit(self, bodies: list[dict]) -> None:
        """Hook run after a batch committed (metrics, logs)."""

    # --- the loop -----------------------------------------------------------------------------

    def stop(self, *_args) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> None:
        """Consume until stopped, reconnecting to the broker when it goes away."""
        queue = self.topo.queue(self.kind)
        self._owner = threading.current_thread()
        committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.kind}-commit")
        try:
            self._run(queue, committer)
        finally:
            committer.shutdown(wait=True)
        log.info("worker for %s stopped", queue.name)

    def _run(self, queue, committer: ThreadPoolExecutor) -> None:
        self._committer = committer
        while not self.stopping.is_set():
            try:
                with messaging.connection(self.settings) as broker:
                    broker.ensure_connection(max_retries=3, interval_start=0.5, timeout=5)
                    self._broker = broker
                    messaging.declare(broker, self.topo)
                    channel = broker.channel()
                    consumer = Consumer(channel, queues=[queue], callbacks=[self._on_message],
                                        accept=["json"], prefetch_count=self.batch_size * 2)
                    with consumer:
                        log.info("consuming %s", queue.name)
                        self._consume(broker)
                    channel.close()
            except broker_errors() as exc:
                self._take_buffer()  # dropped unacked: the broker delivers them again
                self._abandon_inflight()  # its commit stands; its redelivery is dropped as a duplicate
                log.warning("broker connection lost (%s); reconnecting", exc.__class__.__name__)
                self._sleep(1.0)

    def _on_message(self, body, message) -> None:
        self._buffer.append(Delivery(body, message))
        self._buffered_events += len(messaging.unpack(body))

    def _take_buffer(self) -> list[Delivery]:
        """Take every buffered delivery (the next batch starts empty)."""
        batch, self._buffer, self._buffered_events = self._buffer, [], 0
        return batch

    def _consume(self, broker: Connection) -> None:
        overlap = type(self).flush is BatchWorker.flush
        first_at = None
        while not self.stopping.is_set():
            self._settle(broker, wait=False)
            if self._buffer and first_at is None:
                first_at = time.monotonic()
            if self._buffer:
                left = self.batch_wait_s - (time.monotonic() - first_at)
                if self._buffered_events >= self.batch_size or left <= 0:
                    self._take_waiting(broker)
                    if overlap:
                        self._settle(broker, wait=True)  # one batch in flight: commits stay in order
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
            try:
                broker.drain_events(timeout=timeout)
            except socket.timeout:
                broker.heartbeat_check()
        self._settle(broker, wait=True)
        if self._buffer:
            self.flush()

    def _start_commit(self) -> None:
        """Hand the buffered batch to the committing thread."""
        batch = self._take_buffer()
        bodies, poison = self._split(batch)
        self._inflight = (self._committer.submit(self._commit, bodies, poison), batch)

    def _settle(self, broker: Connection, *, wait: bool) -> None:
        """Ack the batch in flight once it has committed (waiting for it when `wait`)."""
        if self._inflight is None:
            return
        future, batch = self._inflight
        while wait and not future.done():
            try:
                future.result(timeout=1.0)
            except TimeoutError:
                broker.heartbeat_check()  # a long retry must not look like a dead consumer
            except Exception:  # noqa: BLE001 - raised below, from the same future
                break
        if not future.done():
            return
        self._inflight = None
        dead = future.result()  # a failure to commit is raised here, in the consuming thread
        batch[-1].message.ack(multiple=True)  # see flush
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
        except broker_errors():
            pass

    def _take_waiting(self, broker: Connection) -> None:
        """Add what is already waiting on the connection to the batch, up to its size.

        Under a backlog the wait is over long before a batch is full (reading a message costs
        tens of microseconds), so batches would stay small and each pay a commit; messages that
        have already arrived cost no extra latency to include.
        """
        while self._buffered_events < self.batch_size:
            try:
                broker.drain_events(timeout=0)
            except socket.timeout:
                return

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
        bodies, poison = self._split(batch)
        dead = self._commit(bodies, poison)
        if batch:
            # One ack for the whole batch: every earlier delivery on this channel is in it or
            # was acked before (the buffer is emptied whenever the channel is replaced).
            batch[-1].message.ack(multiple=True)
        if dead:
            log.warning("%d event(s) dead-lettered", dead)

    def _commit(self, bodies: list[dict], poison: list[tuple[object, str]]) -> int:
        """Commit the batch, retrying transient errors; return how many were dead-lettered."""
        delay = BACKOFF_FIRST_S
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.pool.connection() as conn:
                    try:
                        with conn.transaction():
                            self.handle(conn, bodies)
                            for body, error in poison:
                                self.dead_letter(conn, body, error)
                        self.after_commit(bodies)
                        return len(poison)
                    except Exception as exc:  # noqa: BLE001 - sorted below
                        if is_transient(exc):
                            raise
                        log.warning("batch of %d failed (%s); deciding each event alone",
                                    len(bodies), exc.__class__.__name__)
                        return self._one_by_one(conn, bodies, poison)
            except Exception as exc:  # noqa: BLE001
                if not is_transient(exc):
                    raise
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("transient database error (%s), attempt %d; retrying in %.1fs",
                                exc.__class__.__name__, attempt, delay)
                self._sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP_S)
                if self.stopping.is_set() and attempt > 3:
                    # Not acked: the broker will deliver the batch again after restart.
                    raise SystemExit("stopping with an uncommitted batch") from exc

    def _one_by_one(self, conn: psycopg.Connection, bodies: list[dict], poison: list) -> int:
        dead = list(poison)
        good = []
        with conn.transaction():
            for body in bodies:
                try:
                    with conn.transaction():
                        self.handle(conn, [body])
                    good.append(body)
                except Exception as exc:  # noqa: BLE001
                    if is_transient(exc):
                        raise
                    dead.append((body, f"{exc.__class__.__name__}: {exc}"))
            for body, error in dead:
                self.dead_letter(conn, body, error)
        self.after_commit(good)
        return len(dead)

    def dead_letter(self, conn: psycopg.Connection, body, error: str) -> None:
        """Keep an event that cannot be processed, with its error, for replay."""
        payload = body if isinstance(body, dict) else {"raw": repr(body)[:65536]}
        webhook_id = payload.get("webhook_id") if isinstance(payload, dict) else None
        event_type = payload.get("type") if isinstance(payload, dict) else None
        conn.execute(db.q("insert_dead_letter"), {
            "queue": self.topo.queue(self.kind).name, "webhook_id": webhook_id,
            "event_type": event_type if isinstance(event_type, str) else None,
            "payload": Jsonb(payload), "error": error[:4000],
        })
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
            broker = self._broker
            # Only the consuming thread may use the connection (it heartbeats while it waits).
            if broker is not None and threading.current_thread() is (self._owner or threading.current_thread()):
                try:
                    broker.heartbeat_check()
                except Exception:  # noqa: BLE001 - a dead connection shows on the next drain
                    pass


def broker_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the broker connection is gone."""
    from kombu.exceptions import OperationalError as KombuOperationalError

    errors = [ConnectionError, OSError, KombuOperationalError]
    try:
        import amqp.exceptions

        errors.append(amqp.exceptions.ConnectionError)
        errors.append(amqp.exceptions.ChannelError)
    except ImportError:
        pass
    return tuple(errors)


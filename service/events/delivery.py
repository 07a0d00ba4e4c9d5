"""Deliver the outbox: signed POSTs to subscribers and reminder mails (docs/events.md, "Delivery").

Each delivery is claimed with FOR UPDATE SKIP LOCKED and kept locked while it is sent, so that
several senders (threads, worker processes) never send the same one at once; a delivery is
claimed only when no earlier delivery of the same grant to the same receiver is pending, so a
receiver gets the events of a grant in order. Time comes from a clock the caller passes, so
tests drive the retry schedule without waiting for it.
"""
from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable
from urllib.parse import urlsplit

import psycopg
import urllib3
from psycopg_pool import ConnectionPool
from standardwebhooks import Webhook

from service.events import mail as mail_mod
from service.events.outcome import Outcome
from service.events.guard import Refused, resolve
from service.events.subscriptions import NotConfigured, decrypt_secret
from service.platform import db, tenancy
from service.platform.config import Settings
from service.platform.metrics import DELIVERIES, DELIVERY_SECONDS

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0  # a 2xx within this is success
MAX_ANSWER_BYTES = 64 * 1024  # of an answer's body, at most this much is read
RETRY_HORIZON = timedelta(hours=24)  # retried at least this long, then failed
FIRST_RETRY_S = 5.0
RETRY_FACTOR = 3.0
MAX_RETRY_S = 3 * 3600.0
ERROR_TEXT = 500  # of an error, this many characters are kept in the delivery log
USER_AGENT = "competence-bridge-events/1"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the n-th failed attempt: 5 s, 15 s, 45 s … up to 3 hours."""
    return timedelta(seconds=min(FIRST_RETRY_S * RETRY_FACTOR ** max(attempts - 1, 0), MAX_RETRY_S))


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verify against the system trust store, or the bundle of REQUESTS_CA_BUNDLE / SSL_CERT_FILE."""
    return ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle \
        else ssl.create_default_context()


def post(url: str, body: bytes, headers: dict, settings: Settings, *,
         timeout_s: float = TIMEOUT_S, context: ssl.SSLContext | None = None) -> Outcome:
    """POST to the address checked just now (never re-resolved), no redirects, a capped answer."""
    try:
        scheme, host, port, address = resolve(url, settings)
    except Refused as exc:
        return Outcome(False, None, str(exc))
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if scheme == "https" else 80
    host_header = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s, total=timeout_s)
    if scheme == "https":
        conn_pool = urllib3.HTTPSConnectionPool(
            address, port, timeout=timeout, retries=False, maxsize=1,
            ssl_context=context or ssl_context(settings), server_hostname=host, assert_hostname=host)
    else:
        conn_pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
    deadline = time.monotonic() + timeout_s
    try:
        response = conn_pool.urlopen("POST", target, body=body, headers={**headers, "Host": host_header},
                                     redirect=False, retries=False, preload_content=False,
                                     assert_same_host=False)
        try:
            read = 0
            while read < MAX_ANSWER_BYTES and time.monotonic() < deadline:
                chunk = response.read(min(8192, MAX_ANSWER_BYTES - read))
                if not chunk:
                    break
                read += len(chunk)
        finally:
            response.release_conn()
            response.close()
    except urllib3.exceptions.HTTPError as exc:
        return Outcome(False, None, f"{exc.__class__.__name__}: {exc}"[:ERROR_TEXT])
    except (OSError, ssl.SSLError) as exc:
        return Outcome(False, None, f"{exc.__class__.__name__}: {exc}"[:ERROR_TEXT])
    finally:
        conn_pool.close()
    if time.monotonic() > deadline:
        return Outcome(False, response.status, f"no complete answer within {timeout_s:g} s")
    if 200 <= response.status < 300:
        return Outcome(True, response.status)
    if 300 <= response.status < 400:
        return Outcome(False, response.status, f"HTTP {response.status}: redirects are not followed")
    return Outcome(False, response.status, f"HTTP {response.status}")


def signed_headers(secret: str, webhook_id: str, body: str, at: datetime) -> dict:
    """The Standard Webhooks headers of one attempt (the same as InfoCaption's, docs/webhooks.md)."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class Sender:
    """Send one claimed delivery: a webhook or a reminder mail."""

    def __init__(self, settings: Settings, *, timeout_s: float = TIMEOUT_S):
        self.settings = settings
        self.timeout_s = timeout_s
        self.context = ssl_context(settings)

    def send(self, conn: psycopg.Connection, row: dict, now: datetime) -> Outcome:
        if row["channel"] == "mail":
            return mail_mod.send_reminder(conn, self.settings, row)
        try:
            secret = decrypt_secret(self.settings, row["secret_encrypted"])
        except NotConfigured as exc:
            return Outcome(False, None, str(exc))
        body = json.dumps(row["body"], separators=(",", ":"), ensure_ascii=False)
        # Signed at the real time, whatever clock schedules: receivers check it against theirs.
        headers = signed_headers(secret, row["webhook_id"], body, utcnow())
        return post(row["url"], body.encode("utf-8"), headers, self.settings,
                    timeout_s=self.timeout_s, context=self.context)


PER_TENANT_TURN = 20  # deliveries a tenant gets per turn of the loop


def deliver_one(pool: ConnectionPool, sender: Sender, now: datetime) -> dict | None:
    """Claim, send and record one due delivery; return it with its outcome, or None if none was due."""
    with pool.connection() as conn:
        row = conn.execute(db.q("delivery_claim"), {"now": now}).fetchone()
        if row is None:
            return None
        started = time.monotonic()
        try:
            outcome = sender.send(conn, row, now)
        except Exception as exc:  # noqa: BLE001 - one broken delivery must not stop the loop
            log.exception("delivery %s failed unexpectedly", row["id"])
            outcome = Outcome(False, None, f"{exc.__class__.__name__}")
        DELIVERY_SECONDS.labels(row["channel"]).observe(time.monotonic() - started)
        if outcome.ok:
            conn.execute(db.q("delivery_delivered"), {"id": row["id"], "now": now, "status": outcome.status})
            DELIVERIES.labels(row["channel"], "delivered").inc()
        else:
            past = now - (row["retry_since"] or now) >= RETRY_HORIZON
            conn.execute(db.q("delivery_retry"), {
                "id": row["id"], "now": now, "status": outcome.status,
                "error": (outcome.error or "")[:ERROR_TEXT], "state": "failed" if past else "pending",
                "next_attempt_at": now + retry_delay(row["attempts"] + 1),
            })
            DELIVERIES.labels(row["channel"], "failed" if past else "retry").inc()
            log.info("delivery %s (%s, %s) attempt %s: %s%s", row["id"], row["channel"], row["type"],
                     row["attempts"] + 1, outcome.error, "; failed for good" if past else "")
        return {**row, "outcome": outcome}


def deliver_due(pool: ConnectionPool, sender: Sender, *, now: datetime | None = None,
                limit: int = 100) -> int:
    """Send what is due at `now` (default: the real time), at most `limit`; return how many were tried."""
    tried = 0
    while tried < limit:
        done = deliver_round(pool, sender, now or utcnow(),
                             per_tenant=min(PER_TENANT_TURN, limit - tried))
        if not done:
            break
        tried += done
    return tried


def deliver_round(pool: ConnectionPool, sender: Sender, now: datetime,
                  per_tenant: int = PER_TENANT_TURN) -> int:
    """One turn of each tenant with deliveries due, at most `per_tenant` each, so that a tenant
    with a backlog (or slow receivers) takes its turn and no more; return how many were tried."""
    with tenancy.scope(None), pool.connection() as conn:
        due = [r["tenant_id"] for r in conn.execute(db.q("delivery_due_tenants"), {"now": now})]
    tried = 0
    for tenant in due:
        with tenancy.scope(tenant):
            for _ in range(per_tenant):
                if deliver_one(pool, sender, now) is None:
                    break
                tried += 1
    return tried


class DeliveryLoop:
    """Threads that keep sending what is due, on a pool of their own (docs/processes.md)."""

    IDLE_S = 1.0  # how long a thread waits when nothing is due

    def __init__(self, settings: Settings, database_url: str, *, threads: int = 4,
                 clock: Callable[[], datetime] = utcnow):
        self.settings = settings
        self.database_url = database_url
        self.threads = threads
        self.clock = clock
        self.stopping = threading.Event()
        self.pool: ConnectionPool | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.pool = db.make_pool(self.database_url, min_size=1, max_size=self.threads, name="deliveries",
                                 time_zone=self.settings.time_zone)
        sender = Sender(self.settings)
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(sender,), name=f"deliveries-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, sender: Sender) -> None:
        while not self.stopping.is_set():
            try:
                if not deliver_round(self.pool, sender, self.clock()):
                    self.stopping.wait(self.IDLE_S)
            except psycopg.Error as exc:
                log.warning("deliveries: database unavailable (%s); retrying", exc.__class__.__name__)
                self.stopping.wait(2.0)
            except Exception:  # noqa: BLE001 - the loop outlives any one failure
                log.exception("deliveries: unexpected error")
                self.stopping.wait(2.0)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=TIMEOUT_S + 5)
        if self.pool is not None:
            self.pool.close()

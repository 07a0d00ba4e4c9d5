"""Backfill: a new link grants its competence to every historical passed participant (rule 4).

A backfill reads the course's results from InfoCaption page by page and commits each page in
one transaction of its own: the results go through the same pipeline as webhooks
(`apply_results`), the page's results already stored are decided again for the new link, the
link's counters grow and its checkpoint moves to the next page. A killed backfill therefore
resumes at the first page it had not committed; a page read twice changes nothing (results
are upserted, grants never duplicated), so a second run changes nothing either. While a page
commits, the next one is read from the API (PageReader); a page read ahead is only ever kept in
memory, so the checkpoint alone says where a run resumes.

Two pages are stored at once, on two connections (`Backfill._commit_pages`), and still commit
in order: page n+1 moves the checkpoint only after page n's transaction ended (a
transaction-level advisory lock per page, `_turn_key`), so the checkpoint keeps its meaning.
A page that shares an employee or a result with the page before it waits for that page before
it stores anything, because both would lock the same rows. Should two pages still wait for
each other (a deadlock PostgreSQL breaks by aborting one), nothing of the aborted page is
kept and the run goes on from the checkpoint one page at a time. The grants counted in the
checkpoint are added up in the database, where the pages commit in order.

Phases (`backfill_checkpoint.phase`):
  api     pages 1..N of `GET /API/courses/{id}/results` (the page size is fixed in the
          checkpoint, so a resumed run reads the same offsets);
  stored  results already in our database that the API did not return and that may earn
          something through this link (results that came by webhook before the link existed,
          granted for another link only, or unmatched whose employee exists by now);
  done    finished: the counters are recomputed from the course's stored results.

Counters (on the link, docs/admin-api.md, "Links"), each result of the course counted once:
  granted       passed results that granted the link's competence in this run (a grant
                created, or renewed: the result is the grant's evidence now);
  already_held  passed, matched results that earn the competence but created nothing: the
                employee held it (rule 3), a grant of it was revoked for this result or after
                it (rule 5), or another result of the same employee gave it;
  not_passed    results that do not count as a pass: not passed (rule 1), or passed while the
                course was not published (rule 6). The latter are also counted in
                `not_published`: they are passes InfoCaption shows, so the link says why they
                grant nothing; counting them as held or unmatched would say something false;
  unmatched     passed results whose email matches no employee (kept for the unmatched report);
  errors        records InfoCaption served that could not be read (client.py says what is
                unreadable) or that the database refused for good (SQLSTATE classes 22, 23,
                54: the page is then stored record by record, each in a savepoint). Each is
                kept for ops as a dead letter of the queue `infocaption-api`, and the run goes on.
  processed = granted + already_held + not_passed + unmatched + errors, page by page while
  running, and processed = total at the end, where the counters are taken again from the
  course's stored results (granted and errors are added up page by page, in the transaction of
  each page, so a page rolled back counts nothing). The checkpoint keeps `grants_created`,
  the grants of every competence the pages created.

Page instability: InfoCaption pages by offset, so a list that changes while we page may
repeat or skip a record. Repeats are harmless (see above) and the final counters are taken
from stored rows, so they never count a result twice. Results added or changed while paging
are not the backfill's job: the link exists before the backfill starts, so their webhooks grant
them, and a lost one is read by the reconciliation, whose first window for a course starts
when the course was linked. Results removed while paging can shift a later record onto a page
already read; when the reported total shrinks during a pass, the backfill makes one more pass
(at most MAX_PASSES in all).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Callable

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from service.platform import db, messaging
from service.platform.config import Settings
from service.grants.pipeline import (Outcome, apply_course_status, apply_results_keeping_going,
                                     evaluate_results, keep_bad_records)
from service.people.email import normalize_email
from service.infocaption.client import CourseGone, InfoCaptionClient, InfoCaptionError, Page
from service.platform.metrics import GRANTS
from workers.base import BACKOFF_CAP_S, BACKOFF_FIRST_S, BatchWorker, is_transient

log = logging.getLogger(__name__)

PAGE_SIZE = 500
# The link's counters (docs/admin-api.md, "Links"); `processed` is their sum.
COUNTERS = ("granted", "already_held", "not_passed", "unmatched", "errors")
MAX_PASSES = 3
LOCK_NAMESPACE = 7_413_005  # advisory lock (namespace, link id): one runner per link


def _turn_key(link_id: int, sent: int) -> int:
    """A transaction-level advisory lock (bigint, negative: apart from every other key here)
    that page number `sent` of a run holds from its start; the next page takes it before it
    moves the checkpoint, so it commits only after its predecessor ended."""
    return -(((link_id & 0x7FFFFFFFFF) << 20) | (sent & 0xFFFFF)) - 1


class PageReader:
    """Read API pages one ahead: the next page is fetched while the current one commits.

    `fetch(n)` runs in a thread of its own; `get(n)` returns page n, fetched ahead or now, or
    raises what fetching it raised (CourseGone, InfoCaptionError, Stopping from the pause
    callback, ...), in the caller's thread, at the point where the caller asks for that page:
    after the previous page committed, exactly where a fetch in line would have raised it. At
    most one request is in flight. A page read ahead but not committed is not kept
    anywhere: a run that stops reads it again from the checkpoint.
    """

    WAIT_SLICE_S = 0.5  # a slow page: the caller's pause runs between slices (heartbeat, stop)

    def __init__(self, fetch: Callable[[int], Page], pause: Callable[[float], None]):
        self._fetch = fetch
        self._pause = pause
        self._ahead: tuple[int, Future] | None = None
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def read_ahead(self, number: int) -> None:
        """Start fetching page `number` unless a page is already being read ahead."""
        if self._ahead is None:
            self._ahead = (number, self._start(number))

    def get(self, number: int) -> Page:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == number:
            return self._wait(ahead[1])
        # Not read ahead (or another page was, which in-order reading never does: its result,
        # or error, is not needed). The one reading thread fetches this page after it.
        return self._wait(self._start(number))

    def close(self) -> None:
        """Forget a page read ahead; a fetch still in flight ends on its own (a daemon thread)."""
        self._ahead = None
        if self._thread is not None:
            self._tasks.put(None)  # the thread ends after what it has in hand
            self._tasks, self._thread = queue.SimpleQueue(), None

    def _start(self, number: int) -> Future:
        future: Future = Future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._read, args=(self._tasks,),
                                            name="backfill-pages", daemon=True)
            self._thread.start()
        self._tasks.put((number, future))
        return future

    def _read(self, tasks: queue.SimpleQueue) -> None:
        while (task := tasks.get()) is not None:
            number, future = task
            future.set_running_or_notify_cancel()
            try:
                future.set_result(self._fetch(number))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                future.set_exception(exc)

    def _wait(self, future: Future) -> Page:
        while True:
            try:
                return future.result(timeout=self.WAIT_SLICE_S)
            except TimeoutError:
                # Retries of a slow page: keep the worker's heartbeat and stop request served.
                self._pause(0.01)


class Stopping(Exception):
    """The process is stopping; the backfill stays resumable from its checkpoint."""


class LinkBusy(Exception):
    """Another process is running this link's backfill."""


class CheckpointMoved(Exception):
    """The checkpoint changed under us: another runner took the link over."""


def fresh_checkpoint(page_size: int) -> dict:
    return {"phase": "api", "pass": 1, "page": 1, "page_size": page_size, "last_total": None,
            "shrank": False, "after_id": "", "grants_created": 0}


class Backfill:
    """Run (or resume) the backfill of one link; used by the worker and the CLI."""

    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool,
        client: InfoCaptionClient,
        *,
        page_size: int = PAGE_SIZE,
        pause: Callable[[float], None] = time.sleep,
        on_progress: Callable[[dict], None] | None = None,
    ):
        self.settings = settings
        self.pool = pool
        self.client = client
        self.page_size = page_size
        self.pause = pause
        self.on_progress = on_progress or (lambda _row: None)

    # --- the run ----------------------------------------------------------------------------

    def run(self, link_id: int, *, again: bool = False, wait: bool = True) -> dict | None:
        """Backfill one link to the end; return its final row, None if the link is gone.

        A done backfill is left alone unless `again`; a running or failed one resumes from its
        checkpoint. Raises LinkBusy when another process runs it and `wait` is false.
        """
        with psycopg.connect(self.pool.conninfo, autocommit=True) as lock_conn:
            while not lock_conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                        (LOCK_NAMESPACE, link_id & 0x7FFFFFFF)).fetchone()[0]:
                if not wait:
                    raise LinkBusy(f"link {link_id}: another process is running its backfill")
                self.pause(1.0)
            try:
                return self._run_locked(link_id, again)
            finally:
                lock_conn.execute("SELECT pg_advisory_unlock(%s, %s)",
                                  (LOCK_NAMESPACE, link_id & 0x7FFFFFFF))

    def _run_locked(self, link_id: int, again: bool) -> dict | None:
        link = self._start(link_id, again)
        if link is None or link["backfill_state"] == "done":
            return link
        cp = link["backfill_checkpoint"]
        course = {"id": link["course_id"], "name": link["course_name"], "guide_type": link["guide_type"]}
        log.info("backfill of link %s (course %s) from %s page %s", link_id, course["id"],
                 cp["phase"], cp.get("page"))
        state, error = "done", None
        size = cp["page_size"]
        reader = PageReader(lambda n: self.client.results_page(course, n, size), self.pause)
        try:
            stopped = None
            if cp["phase"] == "api":
                cp, stopped = self._commit_pages(link_id, link, cp, reader)
        finally:
            reader.close()
        if isinstance(stopped, CourseGone):
            # The course was deleted: note it (as the catalog refresh would) and decide what is
            # stored; the history InfoCaption no longer serves cannot be read.
            cp = self._course_gone(link_id, cp, course)
            state, error = "failed", str(stopped)
        elif stopped is not None:
            self._fail(link_id, f"InfoCaption: {stopped}")
            log.warning("backfill of link %s stopped: %s (resumable)", link_id, stopped)
            return self._load(link_id)
        while cp["phase"] == "stored":
            cp = self._commit_stored_chunk(link_id, cp, dict(course, competence_id=link["competence_id"]))
        return self._finish(link_id, course["id"], cp, state, error)

    def _start(self, link_id: int, again: bool) -> dict | None:
        with self.pool.connection() as conn, conn.transaction():
            link = conn.execute(db.q("backfill_link"), {"link_id": link_id}).fetchone()
            if link is None:
                log.info("backfill of link %s: the link no longer exists", link_id)
                return None
            state, cp = link["backfill_state"], link["backfill_checkpoint"]
            if state == "done" and not again:
                return link
            resumable = (state in ("running", "failed") and isinstance(cp, dict)
                         and cp.get("phase") in ("api", "stored"))
            if resumable:
                row = conn.execute(db.q("backfill_resume"), {"link_id": link_id}).fetchone()
            else:
                row = conn.execute(db.q("backfill_begin"), {
                    "link_id": link_id, "checkpoint": Jsonb(fresh_checkpoint(self.page_size))}).fetchone()
            link = dict(link, backfill_state="running", backfill_checkpoint=row["backfill_checkpoint"])
        self.on_progress(link)
        return link

    # --- the pages: two in flight, committed in order -------------------------------------------

    def _commit_pages(self, link_id: int, link: dict, cp: dict,
                      reader: PageReader) -> tuple[dict, Exception | None]:
        """Commit the API pages from the checkpoint on.

        Returns the checkpoint after the last committed page, and the CourseGone or
        InfoCaptionError that stopped the reading (None when every page was committed).

        Two pages are in flight at once, on two connections (a transaction each, committed by
        a thread each): PostgreSQL stores one page while the next is sent and stored. Page n+1
        moves the checkpoint only after page n ended (`_turn_key`), so the checkpoint still
        names the next page to commit and a stopped run resumes from it. Pages that
        share employees can wait for each other's grants: PostgreSQL then aborts one (deadlock
        detected), and the run goes on from the checkpoint one page at a time.
        """
        inflight: deque[tuple[dict, Future]] = deque()  # (checkpoint before the page, commit)
        sent = 0  # pages sent so far; they use the two connections in turn
        limit = 2  # pages in flight
        last_keys: set = set()  # what the page sent last touches
        with self.pool.connection() as first, self.pool.connection() as second, \
                ThreadPoolExecutor(max_workers=2, thread_name_prefix="backfill-commit") as pool:
            conns = (first, second)
            try:
                while True:
                    if cp["phase"] == "api" and len(inflight) < limit:
                        try:
                            page = reader.get(cp["page"])
                        except (CourseGone, InfoCaptionError) as exc:
                            while inflight:  # what is in flight commits first
                                cp = self._settled(inflight.popleft()[1])
                            return cp, exc
                        if not page.last:
                            # The checkpoint will point to the next page: read it meanwhile.
                            reader.read_ahead(cp["page"] + 1)
                        nxt = self._next_checkpoint(link_id, cp, page)
                        keys = _rows_touched(page)
                        started = threading.Event()
                        inflight.append((cp, pool.submit(
                            self._commit_page, conns[sent % 2], link, cp, nxt, page,
                            turn=_turn_key(link_id, sent),
                            after=_turn_key(link_id, sent - 1) if inflight else None,
                            # Pages that share an employee or a result would lock the same rows:
                            # this one then waits for its turn before it stores anything.
                            wait_first=bool(inflight and keys & last_keys), started=started)))
                        sent, last_keys = sent + 1, keys
                        started.wait()  # the page holds its turn before the next may wait for it
                        cp = nxt
                        continue
                    if not inflight:
                        return cp, None
                    before, commit = inflight.popleft()
                    try:
                        done = self._settled(commit)
                    except psycopg.errors.DeadlockDetected:
                        if limit == 1:
                            raise
                        # The pages before it committed; the one after it cannot: once this
                        # one rolled back, it finds the checkpoint unmoved (CheckpointMoved).
                        for _, later in inflight:
                            later.exception()
                        inflight.clear()
                        log.info("backfill of link %s: its pages wait for each other's rows; one "
                                 "page at a time from page %s on", link_id, before["page"])
                        cp, limit = before, 1
                        continue
                    if not inflight:
                        cp = done  # the same position, with the grants counted in the database
            finally:
                for _, commit in inflight:  # no transaction left open on a returned connection
                    commit.exception()

    def _settled(self, future: Future) -> dict:
        """The checkpoint a committed page wrote (or what stopped it, raised)."""
        row, created = future.result()
        GRANTS.labels(source="backfill").inc(created)
        self.on_progress(row)
        return row["backfill_checkpoint"]

    def _next_checkpoint(self, link_id: int, cp: dict, page: Page) -> dict:
        nxt = dict(cp, last_total=page.total_hits)
        if cp["last_total"] is not None and page.total_hits < cp["last_total"]:
            nxt["shrank"] = True
        if not page.last:
            nxt["page"] = cp["page"] + 1
        elif nxt["shrank"] and cp["pass"] < MAX_PASSES:
            log.info("backfill of link %s: the course's results shrank while paging; one more pass",
                     link_id)
            nxt.update({"pass": cp["pass"] + 1, "page": 1, "shrank": False, "last_total": None})
        else:
            nxt.update({"phase": "stored", "after_id": ""})
        return nxt

    # --- one page, one transaction ------------------------------------------------------------

    def _locked_link(self, conn: psycopg.Connection, link_id: int, expected: dict) -> dict:
        link = conn.execute(db.q("backfill_link"), {"link_id": link_id}).fetchone()
        if link is None:
            raise CheckpointMoved(f"link {link_id} was deleted during its backfill")
        if _position(link["backfill_checkpoint"]) != _position(expected):
            raise CheckpointMoved(f"link {link_id}: the checkpoint moved under this runner")
        return link

    def _commit_page(self, conn: psycopg.Connection, link: dict, cp: dict, nxt: dict, page: Page,
                     *, turn: int, after: int | None, wait_first: bool = False,
                     started: threading.Event) -> tuple[dict, int]:
        """Store one page and move the checkpoint from `cp` to `nxt`; return (progress, grants).

        `started` is set once the page holds its turn, or failed before it could."""
        link_id = link["id"]
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (turn,))
                started.set()
                if after is not None and wait_first:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (after,))
                out, refused = self._store_page(conn, page)
                if after is not None and not wait_first:  # the previous page's turn first
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (after,))
                self._locked_link(conn, link_id, cp)
                # Unreadable (skipped by the client) and refused records: counted, kept for ops.
                keep_bad_records(conn, page.rejected + refused, source="backfill",
                                 course_id=link["course_id"], link_id=link_id)
                counts = count_outcomes(out, link["competence_id"],
                                        errors=page.skipped + len(refused))
                row = conn.execute(db.q("backfill_page_progress"), dict(
                    counts, link_id=link_id, total=page.total_hits, checkpoint=Jsonb(nxt),
                    created=out.grants_created)).fetchone()
            return row, out.grants_created
        finally:
            started.set()

    def _store_page(self, conn: psycopg.Connection, page: Page) -> tuple[Outcome, list]:
        """Store a page's results and grant what they earn; return (outcome, refused records).

        The outcome's statuses hold every stored result of the page, as decided now; a record
        the database refuses for good is left out and returned with its error."""
        tz = self.settings.time_zone
        out, refused = apply_results_keeping_going(conn, page.items, source="backfill", tz=tz)
        # Results stored before (by webhook, before the link existed) come back unchanged
        # and were not decided above; decide them for the new link too.
        left_out = {rec.id for rec, _ in refused}
        unchanged = [i for i in dict.fromkeys(r.id for r in page.items)
                     if i not in out.statuses and i not in left_out]
        if unchanged:
            out.add(evaluate_results(conn, unchanged, source="backfill", tz=tz))
        return out, refused

    def _commit_stored_chunk(self, link_id: int, cp: dict, course: dict) -> dict:
        tz = self.settings.time_zone
        with self.pool.connection() as conn, conn.transaction():
            self._locked_link(conn, link_id, cp)
            ids = [r["id"] for r in conn.execute(db.q("backfill_undecided_stored_results"), {
                "course_id": course["id"], "competence_id": course["competence_id"],
                "after_id": cp["after_id"], "limit": cp["page_size"],
            }).fetchall()]
            out = evaluate_results(conn, ids, source="backfill", tz=tz)
            created = out.grants_created
            nxt = dict(cp, grants_created=cp["grants_created"] + created)
            if len(ids) < cp["page_size"]:
                nxt["phase"] = "done"
            else:
                nxt["after_id"] = ids[-1]
            # Only `granted` is added up here; the rest is counted from stored rows at the end.
            conn.execute(db.q("backfill_stored_progress"), {
                "link_id": link_id, "checkpoint": Jsonb(nxt),
                "granted": count_outcomes(out, course["competence_id"], errors=0)["granted"]})
        GRANTS.labels(source="backfill").inc(created)
        return nxt

    def _finish(self, link_id: int, course_id: int, cp: dict, state: str, error: str | None) -> dict | None:
        with self.pool.connection() as conn, conn.transaction():
            link = conn.execute(db.q("backfill_link"), {"link_id": link_id}).fetchone()
            if link is None:
                return None
            row = conn.execute(db.q("backfill_finish"), {
                "link_id": link_id, "course_id": course_id, "state": state, "error": error,
                "checkpoint": Jsonb(dict(cp, phase="done")),
            }).fetchone()
        row = dict(link, **row)
        log.info("backfill of link %s %s: %s processed: %s granted, %s already held, %s not passed"
                 " (%s of them in a course not published then), %s unmatched, %s errors",
                 link_id, state, row["backfill_processed"], row["backfill_granted"],
                 row["backfill_already_held"], row["backfill_not_passed"],
                 row["backfill_not_published"], row["backfill_unmatched"], row["backfill_errors"])
        self.on_progress(row)
        return row

    def _fail(self, link_id: int, error: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(db.q("backfill_fail"), {"link_id": link_id, "error": error[:2000]})

    def _course_gone(self, link_id: int, cp: dict, course: dict) -> dict:
        nxt = dict(cp, phase="stored", after_id="")
        with self.pool.connection() as conn, conn.transaction():
            self._locked_link(conn, link_id, cp)
            apply_course_status(conn, course, "deleted", datetime.now(timezone.utc),
                                source="backfill", tz=self.settings.time_zone)
            conn.execute(db.q("backfill_move_checkpoint"), {"link_id": link_id, "checkpoint": Jsonb(nxt)})
        return nxt

    def _load(self, link_id: int) -> dict | None:
        with self.pool.connection() as conn:
            return conn.execute(db.q("backfill_link"), {"link_id": link_id}).fetchone()


class BackfillWorker(BatchWorker):
    """Consume `{"link_id": N}` from the backfill queue, one link at a time.

    The base class commits one transaction per batch; a backfill commits one per page, so this
    worker replaces `flush`: it runs the backfill to its end (done, or failed with the reason on
    the link) and only then acks. A worker stopped or killed half-way leaves the message
    unacked; the broker delivers it again and the backfill resumes from its checkpoint.
    """

    kind = messaging.BACKFILL

    def __init__(self, settings: Settings, pool: ConnectionPool, *, page_size: int = PAGE_SIZE,
                 client: InfoCaptionClient | None = None, **kwargs):
        kwargs.setdefault("batch_size", 1)
        kwargs.setdefault("batch_wait_ms", 0)
        super().__init__(settings, pool, **kwargs)
        self.client = client or InfoCaptionClient.from_settings(settings)
        self.client.sleep = self._pause  # retries wait without starving the broker heartbeat
        self.backfill = Backfill(settings, pool, self.client, page_size=page_size,
                                 pause=self._pause, on_progress=self._progress)

    def _pause(self, seconds: float) -> None:
        self._sleep(seconds)
        if self.stopping.is_set():
            raise Stopping()

    def _progress(self, _row: dict) -> None:
        self.heartbeat()  # a long backfill must not look like a dead consumer
        if self.stopping.is_set():
            raise Stopping()

    def flush(self) -> None:
        batch = self._take_buffer()
        for delivery in batch:
            if self.stopping.is_set():
                return  # unacked: delivered again after the restart
            body = delivery.body
            link_id = body.get("link_id") if isinstance(body, dict) else None
            if isinstance(link_id, bool) or not isinstance(link_id, int):
                self.reject(delivery, "a backfill message needs an integer link_id")
                continue
            try:
                self.run_link(link_id)
            except Stopping:
                log.info("backfill of link %s interrupted; it resumes from its checkpoint", link_id)
                return
            self.ack([delivery])

    def run_link(self, link_id: int) -> None:
        """Run one backfill to its end, retrying transient database errors from the checkpoint."""
        delay = BACKOFF_FIRST_S
        while True:
            try:
                self.backfill.run(link_id)
                return
            except Stopping:
                raise
            except CheckpointMoved as moved:
                log.warning("backfill stopped: %s", moved)  # the link's new runner finishes it
                return
            except Exception as exc:  # noqa: BLE001 - sorted below
                if is_transient(exc):
                    log.warning("backfill of link %s: transient %s; resuming in %.1fs",
                                link_id, exc.__class__.__name__, delay)
                    self._pause(delay)
                    delay = min(delay * 2, BACKOFF_CAP_S)
                    continue
                log.exception("backfill of link %s failed", link_id)
                try:
                    self.backfill._fail(link_id, f"{exc.__class__.__name__}: {exc}")
                except Exception as again:  # noqa: BLE001
                    if is_transient(again):
                        self._pause(delay)
                        continue
                    raise
                return


def count_outcomes(out: Outcome, competence_id: int, *, errors: int) -> dict:
    """One link's counters (docs/admin-api.md, "Links") for what storing some results did.

    A result counts as `granted` when it granted this link's competence; as `already_held` when
    it earns it but created nothing; a result completed while the course was not published
    counts in `not_passed` (and in `not_published`, the part of it that rule 6 decides).
    """
    counts = {"granted": 0, "already_held": 0, "not_passed": 0, "not_published": 0,
              "unmatched": 0, "errors": errors}
    for rid, outcome in out.statuses.items():
        if competence_id in out.granted_competences.get(rid, ()):
            counts["granted"] += 1
        elif outcome in ("granted", "already_held"):
            counts["already_held"] += 1
        elif outcome in ("not_passed", "course_not_published"):
            counts["not_passed"] += 1
            counts["not_published"] += outcome == "course_not_published"
        elif outcome == "unmatched":
            counts["unmatched"] += 1
        # no_link: not decided for a link (none existed), as the final count has it too
    counts["processed"] = sum(counts[k] for k in COUNTERS)
    return counts


def _rows_touched(page: Page) -> set[tuple[str, str]]:
    """The employees (by normalised email) and results a page's transaction may lock."""
    return {("email", normalize_email(r.email)) for r in page.items} | {("result", r.id) for r in page.items}


def _position(checkpoint: object) -> object:
    """A checkpoint without its running grant count (which the database adds up)."""
    if isinstance(checkpoint, dict):
        return {k: v for k, v in checkpoint.items() if k != "grants_created"}
    return checkpoint

"""Backfill: a new link grants its competence to every historical passed participant (rule 4).

docs/processes.md, "The backfill", describes the design; in short:

- A run of a link's backfill splits the course's API pages into **units** (ranges of
  UNIT_PAGES pages, table `backfill_units`), one message on the backfill queue for each. Any
  backfill worker takes any unit: it holds the unit's session lock (a killed worker's unit is
  free again at once), reads its pages one ahead (PageReader) and commits each page in one
  transaction of its own that stores the page's results decided but **without granting**,
  counts them on the link and moves the unit's `next_page`. A page stored twice changes
  nothing (results are upserted).
- A message is only a wake-up for its link: whoever takes one works on every open unit nobody
  holds, so one worker alone finishes a run and two share it.
- When the last unit is stored, whoever stored it decides the grants (phase `sweep`): first,
  under the link's session lock, the stored results whose status a link changes (stored before
  the link, or before their employee existed) are decided again; then the course's results that
  earn something are granted in SWEEP_PARTS parts by employee, each part chunk after chunk
  **in completion order** (grant_stored_results) under a session lock of its own, so that
  several runners decide at once and the outcome never depends on the order of the API's pages
  (docs/rules.md, rule 3). Each part's row says where it resumes.
- done: the counters are recomputed from the course's stored results.

Counters (on the link, docs/admin-api.md, "Links"), each result of the course counted once:
  granted       passed results that granted the link's competence in this run;
  already_held  passed, matched results that earn the competence but created nothing (while
                the pages are stored, every such result counts here; the sweep moves those that
                granted to `granted`);
  not_passed    results that do not count as a pass: not passed (rule 1), or passed while the
                course was not published (rule 6), the latter also counted in `not_published`;
  unmatched     passed results whose email matches no employee (kept for the unmatched report);
  errors        records InfoCaption served that could not be read (client.py says what is
                unreadable) or that the database refused for good (SQLSTATE classes 22, 23,
                54: the page is then stored record by record, each in a savepoint). Each is
                kept for ops as a dead letter of the queue `infocaption-api`, and the run goes on.
  processed = granted + already_held + not_passed + unmatched + errors; at the end the counters
  are taken again from the course's stored results, so repeats count once.

Page instability: InfoCaption pages by offset, so a list that changes while we page may
repeat or skip a record. Repeats are harmless (see above). Results added or changed while
paging are not the backfill's job: the link exists before the backfill starts, so their
webhooks grant them, and a lost one is read by the reconciliation. The unit that holds the
last page reads on until the API says it was the last, so a list that grew is read to its end.
Results removed while paging can shift a later record onto a page already read: when a total
the API reported during the run is smaller than the run's first one, the backfill makes one
more pass (a new run, at most MAX_PASSES in all) before it decides the grants.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import Callable

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from service.platform import db, messaging, tenancy
from service.platform.config import Settings
from service.grants.pipeline import (apply_course_status, apply_results_keeping_going,
                                     classify_results, grant_stored_results, keep_bad_records,
                                     store_results)
from service.infocaption.client import CourseGone, InfoCaptionClient, InfoCaptionError, Page
from service.platform.metrics import GRANTS
from service.tenants.clients import Clients
from service.tenants.tenants import Directory
from workers.base import BACKOFF_CAP_S, BACKOFF_FIRST_S, BatchWorker, is_transient

log = logging.getLogger(__name__)

PAGE_SIZE = 500
UNIT_PAGES = 20  # pages per unit: 10,000 results at the default page size
SWEEP_CHUNK = 5000  # stored results a part decides per transaction of the sweep (about)
# The link's counters (docs/admin-api.md, "Links"); `processed` is their sum.
COUNTERS = ("granted", "already_held", "not_passed", "unmatched", "errors")
MAX_PASSES = 3
UNIT_LOCKS, SWEEP_LOCKS, PART_LOCKS = 1, 2, 3  # the namespaces of backfill_try_lock
SWEEP_PARTS = 4  # parts of a run's grant decision, by employee: as many runners decide at once
BACKFILL_TOPIC = "backfill"  # the outbox topic relayed to the backfill queue


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

    def seed(self, number: int, page: Page) -> None:
        """Hand over page `number`, read already (the first page a new run read for its total)."""
        future: Future = Future()
        future.set_result(page)
        self._ahead = (number, future)

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


class LinkGone(Exception):
    """The link was deleted during its backfill."""


class CheckpointMoved(Exception):
    """The position changed under us: another runner took the unit or the run over."""


def fresh_checkpoint(page_size: int, run: int, total: int) -> dict:
    return {"phase": "units", "run": run, "pass": 1, "page_size": page_size, "total": total,
            "grants_created": 0}


class Backfill:
    """Run (or resume, or join) the backfill of one link; used by the worker and the CLI."""

    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool,
        client: InfoCaptionClient,
        *,
        page_size: int = PAGE_SIZE,
        unit_pages: int = UNIT_PAGES,
        sweep_chunk: int = SWEEP_CHUNK,
        sweep_parts: int = SWEEP_PARTS,
        pause: Callable[[float], None] = time.sleep,
        on_progress: Callable[[dict], None] | None = None,
    ):
        self.settings = settings
        self.pool = pool
        self.client = client
        self.page_size = page_size
        self.unit_pages = unit_pages
        self.sweep_chunk = sweep_chunk
        self.sweep_parts = sweep_parts
        self.pause = pause
        self.on_progress = on_progress or (lambda _row: None)
        self._first: tuple[int, int, Page] | None = None  # (link, run, page 1) read by _start

    # --- the run ----------------------------------------------------------------------------

    def run(self, link_id: int, *, again: bool = False, wait: bool = True,
            publish: bool = False) -> dict | None:
        """Take part in one link's backfill; return the link's row, None if the link is gone.

        A done backfill is left alone unless `again`; a running or failed one resumes. This
        runner stores every open unit that nobody else holds, and decides the grants if it
        stored the last one. With `wait`, it then waits until the backfill is done or failed
        (others may still hold units); `publish` puts a message for each unit of a new run on
        the backfill queue (through the outbox), so that other workers join.
        """
        try:
            link = self._start(link_id, again, publish)
        except LinkGone:
            log.info("backfill of link %s: the link no longer exists", link_id)
            return None
        if link is None or link["backfill_state"] == "done":
            return link
        with psycopg.connect(self.pool.conninfo, autocommit=True) as locks:
            while True:
                try:
                    link = self._work(locks, link_id, publish)
                except LinkGone:
                    log.info("backfill of link %s: the link was deleted", link_id)
                    return None
                if not wait or link is None or link["backfill_state"] in ("done", "failed"):
                    return link
                self.pause(0.5)  # others hold units or the sweep: wait for them (or their end)
                link = self._load(link_id)
                if link is None or link["backfill_state"] in ("done", "failed"):
                    return link

    def _work(self, locks: psycopg.Connection, link_id: int, publish: bool) -> dict | None:
        """Store the open units nobody holds, then decide the grants if none is left open."""
        while True:
            link = self._load(link_id)
            if link is None:
                raise LinkGone(link_id)
            cp = link["backfill_checkpoint"]
            if link["backfill_state"] != "running" or cp["phase"] == "done":
                return link
            if cp["phase"] == "units":
                for unit in self._open_units(link_id, cp["run"]):
                    if not self._try_lock(locks, UNIT_LOCKS, unit["id"]):
                        continue  # another runner stores it
                    try:
                        stopped = self._store_unit(link, unit["id"])
                    finally:
                        self._unlock(locks, UNIT_LOCKS, unit["id"])
                    if isinstance(stopped, CourseGone):
                        self._note_course_gone(link, stopped)
                        break
                    if stopped is not None:
                        self._fail(link_id, f"InfoCaption: {stopped}")
                        log.warning("backfill of link %s stopped: %s (resumable)", link_id, stopped)
                        return self._load(link_id)
                else:
                    if not self._advance(link_id, publish):
                        return self._load(link_id)  # units still held by others
                continue
            # phase sweep: classify (one runner), then the parts of the grant decision
            if cp.get("step") == "classify":
                if not self._try_lock(locks, SWEEP_LOCKS, link_id):
                    return link  # another runner classifies
                try:
                    self._classify(link_id)
                finally:
                    self._unlock(locks, SWEEP_LOCKS, link_id)
                continue
            for part in self._open_parts(link_id, cp["run"]):
                if not self._try_lock(locks, PART_LOCKS, part["id"]):
                    continue  # another runner decides it
                try:
                    self._grant_part(link, part["id"])
                finally:
                    self._unlock(locks, PART_LOCKS, part["id"])
            return self._finish_if_decided(link_id)

    def _start(self, link_id: int, again: bool, publish: bool) -> dict | None:
        link = self._load(link_id)
        if link is None:
            raise LinkGone(link_id)
        state, cp = link["backfill_state"], link["backfill_checkpoint"]
        if state == "done" and not again:
            return link
        if (state in ("running", "failed") and isinstance(cp, dict) and "run" in cp
                and cp.get("phase") in ("units", "sweep")):
            with self.pool.connection() as conn:
                row = conn.execute(db.q("backfill_resume"), {"link_id": link_id}).fetchone()
            if row is None:  # finished (or deleted) since it was read: decide on what it is now
                return self._start(link_id, again, publish)
            link = dict(link, backfill_state="running", backfill_checkpoint=row["backfill_checkpoint"])
            self.on_progress(link)
            return link
        course = self._course(link)
        try:
            first = self.client.results_page(course, 1, self.page_size)
        except CourseGone as exc:
            total, gone = 0, exc
        else:
            total, gone = first.total_hits, None
        run = (cp or {}).get("run", 0) + 1 if isinstance(cp, dict) else 1
        with self.pool.connection() as conn, conn.transaction():
            locked = conn.execute(db.q("backfill_link"), {"link_id": link_id}).fetchone()
            if locked is None:
                raise LinkGone(link_id)
            began_meanwhile = (locked["backfill_checkpoint"] != cp
                               or locked["backfill_state"] != state)
            if not began_meanwhile:
                link = self._begin(conn, link, run, total, course, gone, publish)
        if began_meanwhile:
            return self._start(link_id, False, publish)  # another runner began: join it
        if gone is None:
            self._first = (link_id, run, first)  # its first unit need not read it again
        log.info("backfill of link %s (course %s): run %s over %s results", link_id,
                 course["id"], run, total)
        self.on_progress(link)
        return link

    def _begin(self, conn: psycopg.Connection, link: dict, run: int, total: int, course: dict,
               gone: CourseGone | None, publish: bool) -> dict:
        """Begin a run: counters back to zero, its units (and their messages)."""
        link_id = link["id"]
        nxt = fresh_checkpoint(self.page_size, run, total)
        row = conn.execute(db.q("backfill_begin"), {"link_id": link_id,
                                                   "checkpoint": Jsonb(nxt)}).fetchone()
        conn.execute(db.q("backfill_forget_runs"), {"link_id": link_id})
        if gone is not None:
            self._course_gone(conn, link_id, nxt, course, str(gone))
        else:
            self._create_units(conn, link_id, run, total, publish)
        return dict(link, backfill_state="running", backfill_checkpoint=row["backfill_checkpoint"])

    def _create_units(self, conn: psycopg.Connection, link_id: int, run: int, total: int,
                      publish: bool) -> None:
        pages = max(1, -(-total // self.page_size))
        firsts = [r["first_page"] for r in conn.execute(db.q("backfill_units_create"), {
            "link_id": link_id, "run": run, "pages": pages, "unit_pages": self.unit_pages})]
        if publish:
            # Same transaction: the messages go out only if the run commits (relayed after it).
            for first in firsts:
                conn.execute(db.q("outbox_insert"), {"topic": BACKFILL_TOPIC, "payload": Jsonb(
                    {"link_id": link_id, "run": run, "first_page": first})})

    # --- a unit: its pages, one transaction each ------------------------------------------------

    def _open_units(self, link_id: int, run: int) -> list[dict]:
        with self.pool.connection() as conn:
            return conn.execute(db.q("backfill_units_open"), {"link_id": link_id, "run": run}).fetchall()

    def _try_lock(self, locks: psycopg.Connection, namespace: int, key: int) -> bool:
        return locks.execute(db.q("backfill_try_lock"), {"namespace": namespace, "key": key}).fetchone()[0]

    def _unlock(self, locks: psycopg.Connection, namespace: int, key: int) -> None:
        locks.execute(db.q("backfill_unlock"), {"namespace": namespace, "key": key})

    def _store_unit(self, link: dict, unit_id: int) -> Exception | None:
        """Store one unit's pages from where it stands; return what stopped the reading, if
        anything (CourseGone, InfoCaptionError), after the pages before it committed."""
        cp = link["backfill_checkpoint"]
        course = self._course(link)
        size = cp["page_size"]
        with self.pool.connection() as conn:
            unit = conn.execute(db.q("backfill_unit"), {"id": unit_id}).fetchone()
        if unit is None or unit["done_at"] is not None or unit["run"] != cp["run"]:
            return None
        is_last = unit["last_page"] * size >= cp["total"]  # the unit that reads to the end
        number = unit["next_page"]
        reader = PageReader(lambda n: self.client.results_page(course, n, size), self.pause)
        first, self._first = self._first, None
        if first is not None and first[:2] == (link["id"], cp["run"]) and number == 1:
            reader.seed(1, first[2])
        try:
            while True:
                try:
                    page = reader.get(number)
                except (CourseGone, InfoCaptionError) as exc:
                    return exc
                # The unit of the last page reads on until the API says it was the last.
                done = page.last or (number >= unit["last_page"] and not is_last)
                if not done:
                    reader.read_ahead(number + 1)  # read the next page while this one commits
                row = self._commit_page(link, unit_id, number, page, done)
                self.on_progress(row)
                if done:
                    return None
                number += 1
        finally:
            reader.close()

    def _commit_page(self, link: dict, unit_id: int, number: int, page: Page, done: bool) -> dict:
        link_id = link["id"]
        tz = self.settings.time_zone
        with self.pool.connection() as conn, conn.transaction():
            unit = conn.execute(db.q("backfill_unit"), {"id": unit_id}).fetchone()
            if unit is None or unit["next_page"] != number or unit["done_at"] is not None:
                raise CheckpointMoved(f"link {link_id}: unit {unit_id} moved under this runner")
            out, refused = apply_results_keeping_going(conn, page.items, source="backfill", tz=tz,
                                                       apply=store_results)
            # Unreadable (skipped by the client) and refused records: counted, kept for ops.
            keep_bad_records(conn, page.rejected + refused, source="backfill",
                             course_id=link["course_id"], link_id=link_id)
            counts = count_page(out.statuses, errors=page.skipped + len(refused))
            row = conn.execute(db.q("backfill_page_progress"), dict(
                counts, link_id=link_id, total=page.total_hits)).fetchone()
            if row is None:
                raise LinkGone(link_id)
            conn.execute(db.q("backfill_unit_progress"), {
                "id": unit_id, "next_page": number + 1, "done": done, "total": page.total_hits})
        return dict(link, **row)

    def _note_course_gone(self, link: dict, gone: CourseGone) -> None:
        """The course was deleted: note it (as the catalog refresh would), read no more and
        decide what is stored; the history InfoCaption no longer serves cannot be read."""
        with self.pool.connection() as conn, conn.transaction():
            locked = conn.execute(db.q("backfill_link"), {"link_id": link["id"]}).fetchone()
            if locked is None:
                raise LinkGone(link["id"])
            cp = locked["backfill_checkpoint"]
            if cp.get("phase") == "units":
                self._course_gone(conn, link["id"], cp, self._course(link), str(gone))

    def _course_gone(self, conn: psycopg.Connection, link_id: int, cp: dict, course: dict,
                     error: str) -> dict:
        apply_course_status(conn, course, "deleted", datetime.now(timezone.utc),
                            source="backfill", tz=self.settings.time_zone)
        conn.execute(db.q("backfill_units_close"), {"link_id": link_id, "run": cp["run"]})
        nxt = dict(cp, phase="sweep", step="classify", after_id="", gone=error)
        conn.execute(db.q("backfill_move_checkpoint"), {
            "link_id": link_id, "checkpoint": Jsonb(nxt)})
        return nxt

    def _advance(self, link_id: int, publish: bool) -> bool:
        """After the units: one more pass if the list shrank, else on to the sweep. Return
        False while units of the run are still open (held by other runners)."""
        with self.pool.connection() as conn, conn.transaction():
            link = conn.execute(db.q("backfill_link"), {"link_id": link_id}).fetchone()
            if link is None:
                raise LinkGone(link_id)
            cp = link["backfill_checkpoint"]
            if cp["phase"] != "units":
                return True
            left = conn.execute(db.q("backfill_units_left"), {"link_id": link_id, "run": cp["run"]}).fetchone()
            if left["open"]:
                return False
            shrank = left["least_total"] is not None and left["least_total"] < cp["total"]
            if shrank and cp["pass"] < MAX_PASSES:
                log.info("backfill of link %s: the course's results shrank while paging; one more"
                         " pass", link_id)
                total, run = left["least_total"], cp["run"] + 1
                nxt = dict(cp, run=run, total=total, **{"pass": cp["pass"] + 1})
                self._create_units(conn, link_id, run, total, publish)
                conn.execute(db.q("backfill_units_drop"), {"link_id": link_id, "run": run})
            else:
                log.info("backfill of link %s: every page stored; deciding the grants", link_id)
                nxt = dict(cp, phase="sweep", step="classify", after_id="")
            conn.execute(db.q("backfill_move_checkpoint"), {
                "link_id": link_id, "checkpoint": Jsonb(nxt)})
        return True

    # --- the sweep: the grants, from the stored history in completion order --------------------

    def _classify(self, link_id: int) -> None:
        """Decide again the stored results whose status a link changes, chunk by chunk; then
        the parts of the grant decision begin."""
        while True:
            with self.pool.connection() as conn, conn.transaction():
                link = conn.execute(db.q("backfill_link"), {"link_id": link_id}).fetchone()
                if link is None:
                    raise LinkGone(link_id)
                cp = link["backfill_checkpoint"]
                if cp["phase"] != "sweep" or cp.get("step") != "classify":
                    return
                ids = [r["id"] for r in conn.execute(db.q("backfill_results_to_classify"), {
                    "course_id": link["course_id"], "after_id": cp["after_id"],
                    "limit": self.sweep_chunk}).fetchall()]
                classify_results(conn, ids)
                if len(ids) < self.sweep_chunk:
                    nxt = dict(cp, step="grant", parts=self.sweep_parts)
                    conn.execute(db.q("backfill_sweep_parts_create"), {
                        "link_id": link_id, "run": cp["run"], "parts": self.sweep_parts})
                else:
                    nxt = dict(cp, after_id=ids[-1])
                conn.execute(db.q("backfill_move_checkpoint"), {
                    "link_id": link_id, "checkpoint": Jsonb(nxt)})
            self.on_progress(link)
            if nxt["step"] == "grant":
                return

    def _open_parts(self, link_id: int, run: int) -> list[dict]:
        with self.pool.connection() as conn:
            return conn.execute(db.q("backfill_sweep_parts_open"), {"link_id": link_id, "run": run}).fetchall()

    def _grant_part(self, link: dict, part_id: int) -> None:
        """Decide one part's grants chunk by chunk, in completion order, from where it stands."""
        tz = self.settings.time_zone
        while True:
            with self.pool.connection() as conn, conn.transaction():
                part = conn.execute(db.q("backfill_sweep_part"), {"id": part_id}).fetchone()
                if part is None or part["done_at"] is not None:
                    return
                # Each chunk reads every part's next results and decides its own (about
                # sweep_chunk of them): grant_stored_results says why.
                read = self.sweep_chunk * part["parts"]
                chunk = grant_stored_results(
                    conn, link["course_id"], (part["after_at"], part["after_id"]),
                    limit=read, source="backfill", tz=tz, part=part["part"], parts=part["parts"])
                done = chunk.size < read
                after = chunk.after or (part["after_at"], part["after_id"])
                conn.execute(db.q("backfill_sweep_part_progress"), {
                    "id": part_id, "after_at": after[0], "after_id": after[1], "done": done})
                granted = sum(link["competence_id"] in c for c in chunk.granted_competences.values())
                conn.execute(db.q("backfill_grant_progress"), {
                    "link_id": link["id"], "created": chunk.grants_created, "granted": granted})
            GRANTS.labels(source="backfill", tenant=tenancy.label()).inc(chunk.grants_created)
            self.on_progress(link)
            if done:
                return

    def _finish_if_decided(self, link_id: int) -> dict | None:
        """End the backfill once every part of its grant decision is done (once: whoever
        sees it first); else return the link as it stands."""
        with self.pool.connection() as conn, conn.transaction():
            link = conn.execute(db.q("backfill_link"), {"link_id": link_id}).fetchone()
            if link is None:
                raise LinkGone(link_id)
            cp = link["backfill_checkpoint"]
            if cp["phase"] != "sweep" or cp.get("step") != "grant":
                return link
            if conn.execute(db.q("backfill_sweep_parts_left"),
                            {"link_id": link_id, "run": cp["run"]}).fetchone()["open"]:
                return link  # parts held by other runners
            state = "failed" if cp.get("gone") else "done"
            row = conn.execute(db.q("backfill_finish"), {
                "link_id": link_id, "course_id": link["course_id"], "state": state,
                "error": cp.get("gone"), "checkpoint": Jsonb(dict(cp, phase="done")),
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

    @staticmethod
    def _course(link: dict) -> dict:
        return {"id": link["course_id"], "name": link["course_name"], "guide_type": link["guide_type"]}

    def _load(self, link_id: int) -> dict | None:
        with self.pool.connection() as conn:
            return conn.execute(db.q("backfill_link"), {"link_id": link_id}).fetchone()


class BackfillWorker(BatchWorker):
    """Consume `{"link_id": N, ...}` from the backfill queue, one message at a time.

    A message wakes this worker up for its link (a new link's, or one unit's of a run): it
    stores every open unit nobody else holds, decides the grants when it stored the last one,
    and only then acks. The base class commits one transaction per batch; a backfill commits
    one per page, so this worker replaces `flush`. A worker stopped or killed half-way leaves
    the message unacked; it is delivered again and the backfill resumes where its units stand.
    """

    kind = messaging.BACKFILL

    def __init__(self, settings: Settings, pool: ConnectionPool, *, page_size: int = PAGE_SIZE,
                 client: InfoCaptionClient | None = None, **kwargs):
        kwargs.setdefault("batch_size", 1)
        kwargs.setdefault("batch_wait_ms", 0)
        super().__init__(settings, pool, **kwargs)
        self.page_size = page_size
        self.client = client  # one client for every tenant (tests), or each tenant's own
        self.clients = Clients(settings)
        self.tenants = Directory(settings, pool)
        self._backfills: dict[int, tuple[InfoCaptionClient, Backfill]] = {}

    def backfill_of(self, tenant_id: int) -> Backfill:
        """The runner of a tenant's backfills, with its InfoCaption host and credentials."""
        tenant = self.tenants.by_id(tenant_id)
        if tenant is None:
            raise LinkGone()
        client = self.client if self.client is not None else self.clients.of(tenant)
        known = self._backfills.get(tenant_id)
        if known is None or known[0] is not client:
            client.sleep = self._pause  # retries wait without starving the broker heartbeat
            # The tenant's day: its results' dates are of its time zone.
            settings = dataclasses.replace(self.settings, time_zone=tenant.time_zone)
            known = (client, Backfill(settings, self.pool, client, page_size=self.page_size,
                                      pause=self._pause, on_progress=self._progress))
            self._backfills[tenant_id] = known
        return known[1]

    @property
    def backfill(self) -> Backfill:
        """The `default` tenant's runner."""
        return self.backfill_of(tenancy.DEFAULT_ID)

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
                with tenancy.scope(tenancy.of_message(body)):
                    self.run_link(link_id)
            except Stopping:
                log.info("backfill of link %s interrupted; it resumes from its checkpoint", link_id)
                return
            self.ack([delivery])

    def run_link(self, link_id: int) -> None:
        """Run one backfill (of the bound tenant) to its end, retrying transient database
        errors from the checkpoint."""
        delay = BACKOFF_FIRST_S
        backfill = self.backfill_of(tenancy.current() or tenancy.DEFAULT_ID)
        while True:
            try:
                backfill.run(link_id, wait=False, publish=True)
                return
            except Stopping:
                raise
            except CheckpointMoved as moved:
                log.warning("backfill stopped: %s", moved)  # the unit's new runner finishes it
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
                    backfill._fail(link_id, f"{exc.__class__.__name__}: {exc}")
                except Exception as again:  # noqa: BLE001
                    if is_transient(again):
                        self._pause(delay)
                        continue
                    raise
                return


def count_page(statuses: dict[str, str], *, errors: int) -> dict:
    """One stored page's contribution to the link's counters (docs/admin-api.md, "Links").

    Passed, matched results count as already_held until the sweep moves those that granted the
    link's competence to granted; a result completed while the course was not published counts
    in not_passed (and in not_published). Results decided `no_link` or `received` were stored
    before the link: the sweep decides them, the final count counts them.
    """
    counts = {"already_held": 0, "not_passed": 0, "not_published": 0, "unmatched": 0,
              "errors": errors}
    for status in statuses.values():
        if status == "granted":
            counts["already_held"] += 1
        elif status in ("failed", "course_not_published"):
            counts["not_passed"] += 1
            counts["not_published"] += status == "course_not_published"
        elif status == "unmatched":
            counts["unmatched"] += 1
    counts["processed"] = sum(counts[k] for k in COUNTERS if k in counts)
    return counts

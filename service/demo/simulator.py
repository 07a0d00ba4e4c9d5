"""A local InfoCaption for demos, tests and benchmarks (`competence-bridge simulate`).

It serves docs/infocaption-api.md (OAuth2 client credentials, the course catalog, course results
with paging and `changedSince`) from a data set it generates from a seed or loads from JSON,
and sends signed webhooks (docs/webhooks.md) to the service, retrying like a Standard Webhooks
sender (same `webhook-id`, re-signed on each attempt, growing delays, `Retry-After` honoured).

For tests it can lose chosen webhooks, answer 429/500 or stall on its API, delete, unpublish
and publish courses, expire tokens and add results at runtime. Use it from Python
(`Simulator(...).start()` on an ephemeral port) or, when started by the command, through the
small control API under `/_sim/` (see `SimulatorApp`).
"""
from __future__ import annotations

import bisect
import heapq
import itertools
import json
import logging
import random
import secrets
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote

import requests
from standardwebhooks import Webhook
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from service.platform.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

log = logging.getLogger(__name__)

COURSE_NAMES = (
    "HLR vuxen", "Basala hygienrutiner", "Brandskydd grund", "Förflyttningsteknik",
    "Läkemedelshantering", "Informationssäkerhet", "Första hjälpen", "Arbetsmiljö för chefer",
    "Dokumentation i vården", "Demensvård", "Nutrition äldre", "Hot och våld",
)
GUIDE_NAMES = (("Logga in i Lifecare", 1), ("Skriv ut från Teams", 2), ("Kunskapstest GDPR", 5))
ROLES = ("medarbetare", "undersköterska", "sjuksköterska", "vikarie", "handläggare",
         "lärare", "kock", "chef")
ORG_DOMAIN = "kommun.example"
EXTERNAL_DOMAIN = "leverantor.example"
MAX_HITS_PER_PAGE = 1000
# Delays before attempts 2, 3, ... (Standard Webhooks' schedule, compressed for demos).
DEFAULT_RETRY_SCHEDULE = (1.0, 5.0, 30.0, 120.0, 300.0, 600.0, 1800.0)


# --- the data set ---------------------------------------------------------------------------


def _iso(moment: datetime, timespec: str = "seconds") -> str:
    text = moment.isoformat(timespec=timespec)
    return text.replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment


@dataclass
class SimCourse:
    id: int
    name: str
    guide_type: int
    published: bool = True
    deleted: bool = False
    date_published: str | None = None

    def to_api(self) -> dict:
        return {"id": self.id, "name": self.name, "guideType": self.guide_type,
                "published": self.published, "datePublished": self.date_published}

    def ref(self) -> dict:
        return {"id": self.id, "name": self.name, "guideType": self.guide_type}


@dataclass
class Employee:
    """A member of the organisation's staff (what `seed-demo` puts into the service)."""

    email: str
    first_name: str
    last_name: str


@dataclass
class _Entry:
    """One record of a course's results list, in the API's order."""

    key: tuple  # (completed instant, result id): the API lists oldest first
    changed: datetime
    payload: dict  # exactly what the API serves (a bad record is served as it is)

    def __lt__(self, other: "_Entry") -> bool:
        return self.key < other.key


@dataclass
class DataSet:
    courses: dict[int, SimCourse] = field(default_factory=dict)
    employees: list[Employee] = field(default_factory=list)
    results: dict[int, list[_Entry]] = field(default_factory=dict)

    # -- reading ---------------------------------------------------------------------------

    def all_results(self, course_id: int | None = None) -> list[dict]:
        """Result payloads (with `courseId`), in API order."""
        ids = [course_id] if course_id is not None else sorted(self.results)
        return [dict(e.payload, courseId=cid) if isinstance(e.payload, dict) else e.payload
                for cid in ids for e in self.results.get(cid, [])]

    def published_courses(self) -> list[SimCourse]:
        return [c for c in self.courses.values()
                if c.published and not c.deleted and c.guide_type in (14, 18)]

    # -- writing ---------------------------------------------------------------------------

    def add(self, course_id: int, payload: dict, completed: datetime | None = None,
            changed: datetime | None = None) -> None:
        """Insert a record at its place in the course's list (oldest completion first)."""
        if completed is None or changed is None:
            try:
                completed = completed or _parse_time(payload["completedAt"])
                changed = changed or _parse_time(payload.get("changedAt") or payload["completedAt"])
            except (KeyError, TypeError, ValueError):  # a bad record: keep it where it lands
                completed = changed = datetime.now(timezone.utc)
        rid = payload.get("resultId") if isinstance(payload, dict) else None
        key = (completed.astimezone(timezone.utc), str(rid))
        bisect.insort(self.results.setdefault(course_id, []), _Entry(key, changed, payload))

    # -- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict:
        return {
            "courses": [dict(c.to_api(), deleted=c.deleted) for c in self.courses.values()],
            "employees": [{"email": e.email, "firstName": e.first_name, "lastName": e.last_name}
                          for e in self.employees],
            "results": self.all_results(),
        }

    @classmethod
    def from_json(cls, data: dict) -> "DataSet":
        ds = cls()
        for c in data.get("courses", []):
            ds.courses[int(c["id"])] = SimCourse(
                int(c["id"]), c["name"], int(c["guideType"]), bool(c.get("published", True)),
                bool(c.get("deleted", False)), c.get("datePublished"))
        for e in data.get("employees", []):
            ds.employees.append(Employee(e["email"], e.get("firstName") or "", e.get("lastName") or ""))
        for r in data.get("results", []):
            record = dict(r)
            course_id = int(record.pop("courseId"))
            ds.add(course_id, record)
        return ds

    @classmethod
    def load(cls, path: str | Path) -> "DataSet":
        return cls.from_json(json.loads(Path(path).read_text()))

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1))


def generate_employees(seed: int, count: int) -> list[Employee]:
    """The organisation's staff: depends on the seed and the count only."""
    rng = random.Random(f"{seed}:employees")
    staff = []
    for i in range(count):
        role = rng.choice(ROLES)
        staff.append(Employee(f"{role}.{i:04d}@{ORG_DOMAIN}", role.capitalize(), f"{i:04d}"))
    return staff


def generate_courses(seed: int, count: int, *, anchor: datetime) -> dict[int, SimCourse]:
    """Courses of guide types 14 and 18 (about one in six unpublished) plus three guides."""
    rng = random.Random(f"{seed}:courses")
    courses: dict[int, SimCourse] = {}
    for i in range(count):
        cid = 4711 + i
        name = COURSE_NAMES[i % len(COURSE_NAMES)]
        if i >= len(COURSE_NAMES):
            name = f"{name} {i // len(COURSE_NAMES) + 1}"
        published = i < 3 or rng.random() >= 1 / 6  # the first three are always published
        when = anchor - timedelta(days=rng.randint(400, 1500))
        courses[cid] = SimCourse(cid, name, 18 if i % 3 == 2 else 14, published, False, _iso(when))
    for j, (name, guide_type) in enumerate(GUIDE_NAMES):
        gid = 9001 + j
        courses[gid] = SimCourse(gid, name, guide_type, True, False, _iso(anchor - timedelta(days=300)))
    return courses


def _vary_email(rng: random.Random, email: str) -> str:
    """The same address as people type it: mixed case, stray spaces, decomposed letters."""
    roll = rng.random()
    if roll < 0.45:
        return email
    if roll < 0.65:
        local, _, domain = email.partition("@")
        return f"{local.title()}@{domain.title()}"
    if roll < 0.8:
        return f"  {email} "
    if roll < 0.9:
        return email.upper()
    return unicodedata.normalize("NFD", email)  # å/ö as a letter plus a combining mark


def generate(
    seed: int = 42,
    *,
    courses: int = 8,
    results_per_course: int = 300,
    employees: int = 150,
    unmatched_share: float = 0.15,
    pass_share: float = 0.75,
    bad_records: int = 0,
    years: float = 3.0,
    anchor: datetime | None = None,
) -> DataSet:
    """Generate a data set; the same arguments give the same data (within one UTC day)."""
    if anchor is None:
        anchor = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    ds = DataSet(courses=generate_courses(seed, courses, anchor=anchor),
                 employees=generate_employees(seed, employees))
    rng = random.Random(f"{seed}:results")
    externals = [f"extern.{i:04d}@{EXTERNAL_DOMAIN}" for i in range(max(1, employees // 4))]
    span_s = int(years * 365 * 86400)
    offsets = (timezone.utc, timezone(timedelta(hours=1)), timezone(timedelta(hours=2)))
    for course in list(ds.courses.values()):
        if course.guide_type not in (14, 18):
            continue
        for k in range(results_per_course):
            if ds.employees and rng.random() >= unmatched_share:
                person = rng.choice(ds.employees)
                email, first, last = person.email, person.first_name, person.last_name
            else:
                email, first, last = rng.choice(externals), "Extern", "Konsult"
            completed = anchor - timedelta(seconds=rng.randint(3600, span_s))
            if rng.random() < 0.1:  # late evening UTC: already the next day in Stockholm
                completed = completed.replace(hour=23, minute=rng.randint(0, 59))
            completed = completed.astimezone(rng.choice(offsets))
            changed = completed + timedelta(seconds=rng.randint(0, 600))
            passed = rng.random() < pass_share
            payload = {
                "resultId": f"r-{course.id}-{k:06d}",
                "user": {"email": _vary_email(rng, email), "firstName": first, "lastName": last},
                "passed": passed,
                "score": rng.randint(70, 100) if passed else rng.randint(0, 69),
                "completedAt": _iso(completed),
                "changedAt": _iso(changed.astimezone(timezone.utc)),
            }
            ds.add(course.id, payload, completed, changed)
    course_ids = [c.id for c in ds.courses.values() if c.guide_type in (14, 18)]
    for n in range(bad_records):
        cid = course_ids[n % len(course_ids)]
        broken = [
            {"resultId": f"bad-{n}", "user": {"email": "nobody"}, "passed": True,
             "completedAt": _iso(anchor)},
            {"resultId": f"bad-{n}", "user": {"email": f"medarbetare.{n}@{ORG_DOMAIN}"},
             "passed": "yes", "completedAt": _iso(anchor)},
            {"resultId": f"bad-{n}", "user": {"email": f"medarbetare.{n}@{ORG_DOMAIN}"},
             "passed": True, "completedAt": "2026-11-29T12:00:00"},  # no offset
        ][n % 3]
        ds.add(cid, broken, anchor - timedelta(seconds=n), anchor - timedelta(seconds=n))
    return ds


# --- webhooks -------------------------------------------------------------------------------


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    msg_id: str = field(compare=False)
    body: str = field(compare=False)
    attempt: int = field(compare=False, default=0)


class WebhookSender:
    """Send signed webhooks, retrying 5xx, 429, 408 and network errors with growing delays."""

    def __init__(self, url: str, secret: str, *, retry_schedule=DEFAULT_RETRY_SCHEDULE,
                 timeout: float = 10.0, concurrency: int = 2):
        self.url = url
        self.signer = Webhook(secret)
        self.retry_schedule = tuple(retry_schedule)
        self.timeout = timeout
        self._heap: list[_Delivery] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._in_flight = 0
        self._stopping = False
        self._local = threading.local()
        self.delivered = 0
        self.given_up = 0
        self.attempts = 0
        self.answers: dict[int, int] = {}  # status (0 = no answer) -> count
        self._threads = [threading.Thread(target=self._loop, name=f"webhook-sender-{i}", daemon=True)
                         for i in range(max(1, concurrency))]
        for t in self._threads:
            t.start()

    def send(self, body: dict, msg_id: str | None = None) -> str:
        """Queue one webhook; return its webhook-id."""
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        with self._cond:
            heapq.heappush(self._heap, _Delivery(time.monotonic(), next(self._seq), msg_id, raw))
            self._cond.notify()
        return msg_id

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._in_flight

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued webhook was delivered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.02)
        return self.pending() == 0

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._heap or self._heap[0].due > time.monotonic()):
                    wait = self._heap[0].due - time.monotonic() if self._heap else None
                    self._cond.wait(timeout=wait)
                if self._stopping:
                    return
                delivery = heapq.heappop(self._heap)
                self._in_flight += 1
            try:
                self._attempt(delivery)
            finally:
                with self._cond:
                    self._in_flight -= 1

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _attempt(self, d: _Delivery) -> None:
        d.attempt += 1
        now = datetime.now(timezone.utc)
        headers = {
            "webhook-id": d.msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.signer.sign(d.msg_id, now, d.body),
            "content-type": "application/json",
            "user-agent": "infocaption-simulator",
        }
        status, retry_after = 0, None
        try:
            response = self._session().post(self.url, data=d.body.encode(), headers=headers,
                                             timeout=self.timeout)
            status = response.status_code
            retry_after = response.headers.get("Retry-After")
            response.close()
        except requests.RequestException as exc:
            log.debug("webhook %s attempt %d: %s", d.msg_id, d.attempt, exc.__class__.__name__)
        with self._cond:
            self.attempts += 1
            self.answers[status] = self.answers.get(status, 0) + 1
        if 200 <= status < 300:
            with self._cond:
                self.delivered += 1
            return
        retryable = status == 0 or status >= 500 or status in (408, 429)
        if not retryable or d.attempt > len(self.retry_schedule):
            log.warning("webhook %s given up after %d attempt(s) (last answer %s)",
                        d.msg_id, d.attempt, status or "none")
            with self._cond:
                self.given_up += 1
            return
        delay = self.retry_schedule[d.attempt - 1]
        try:
            delay = max(delay, min(float(retry_after), 600.0)) if retry_after else delay
        except ValueError:
            pass
        with self._cond:
            d.due = time.monotonic() + delay
            heapq.heappush(self._heap, d)
            self._cond.notify()


# --- the HTTP API ---------------------------------------------------------------------------


@dataclass
class _Fault:
    status: int | None
    times: int
    path: str
    retry_after: str | None = None
    delay: float = 0.0


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (a backfill makes thousands); errors still show."""

    def log_request(self, code="-", size="-") -> None:
        pass


def _json(body, status: int = 200, headers: dict | None = None) -> Response:
    text = json.dumps(body, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (a bad record served as it is): JSON can only carry it escaped.
        text = json.dumps(body, ensure_ascii=True)
    return Response(text, status=status, headers=headers or {}, content_type="application/json")


class Simulator:
    """A running local InfoCaption: data, HTTP API, fault injection and webhook sending."""

    def __init__(
        self,
        data: DataSet | None = None,
        *,
        client_id: str = DEMO_CLIENT_ID,
        client_secret: str = DEMO_CLIENT_SECRET,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        token_ttl: int = 3600,
        retry_schedule=DEFAULT_RETRY_SCHEDULE,
        sender_concurrency: int = 2,
    ):
        self.data = data if data is not None else generate()
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.lock = threading.RLock()
        self._tokens: dict[str, float] = {}
        self._faults: list[_Fault] = []
        self._served: list[tuple[str, str, int]] = []
        self.sender = (WebhookSender(webhook_url, webhook_secret, retry_schedule=retry_schedule,
                                     concurrency=sender_concurrency)
                       if webhook_url and webhook_secret else None)
        self.lost: list[str] = []  # result ids or event kinds whose webhook was "lost"
        self._server = None
        self._thread: threading.Thread | None = None
        self._traffic: threading.Thread | None = None
        self._traffic_stop = threading.Event()
        self._rng = random.Random(0)
        self._counter = itertools.count(1)
        self.app = SimulatorApp(self)

    # -- life cycle ------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> "Simulator":
        """Serve on host:port (0 = any free port) in a daemon thread."""
        self._server = make_server(host, port, self.app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="simulator", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self, host: str = "127.0.0.1", port: int = 8001) -> None:
        """Serve in the calling thread (the command)."""
        self._server = make_server(host, port, self.app, threaded=True, request_handler=_QuietHandler)
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.stop_traffic()
        if self.sender is not None:
            self.sender.stop()
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        if self._server is not None:
            self._server.server_close()

    def __enter__(self) -> "Simulator":
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- data at runtime -------------------------------------------------------------------

    def course(self, course_id: int) -> SimCourse:
        return self.data.courses[course_id]

    def add_result(
        self,
        course_id: int,
        email: str,
        *,
        passed: bool = True,
        completed_at: datetime | None = None,
        changed_at: datetime | None = None,
        result_id: str | None = None,
        first_name: str | None = "Ny",
        last_name: str | None = "Deltagare",
        score: int | None = None,
        send_webhook: bool = True,
    ) -> dict:
        """Add (or change) a result; the API serves it and, unless lost, a webhook tells."""
        now = datetime.now(timezone.utc)
        completed_at = completed_at or now
        changed_at = changed_at or max(now, completed_at)
        result_id = result_id or f"r-live-{uuid.uuid4().hex[:12]}"
        payload = {
            "resultId": result_id,
            "user": {"email": email, "firstName": first_name, "lastName": last_name},
            "passed": passed,
            "score": score if score is not None else (90 if passed else 40),
            "completedAt": _iso(completed_at, "milliseconds"),
            "changedAt": _iso(changed_at.astimezone(timezone.utc), "milliseconds"),
        }
        with self.lock:
            course = self.data.courses[course_id]
            entries = self.data.results.setdefault(course_id, [])
            entries[:] = [e for e in entries
                          if not (isinstance(e.payload, dict) and e.payload.get("resultId") == result_id)]
            self.data.add(course_id, payload, completed_at, changed_at)
        body = {
            "type": "course.completed",
            "timestamp": _iso(now, "milliseconds"),
            "data": {
                "resultId": result_id,
                "course": course.ref(),
                "user": payload["user"],
                "passed": passed,
                "score": payload["score"],
                "completedAt": payload["completedAt"],
            },
        }
        self._notify(body, send_webhook, result_id)
        return dict(payload, courseId=course_id)

    def add_bad_record(self, course_id: int, record) -> None:
        """Serve a record as it is (for 'one bad record never stops a backfill')."""
        with self.lock:
            self.data.add(course_id, record)

    def delete_course(self, course_id: int, *, notify: bool = False) -> None:
        """Delete a course: gone from the catalog; its results endpoint answers 404."""
        self._set_course(course_id, "deleted", notify, deleted=True)

    def unpublish_course(self, course_id: int, *, notify: bool = False) -> None:
        """Stop publishing a course: gone from the catalog; its results are still served."""
        self._set_course(course_id, "unpublished", notify, published=False)

    def publish_course(self, course_id: int, *, notify: bool = False) -> None:
        self._set_course(course_id, "published", notify, published=True, deleted=False)

    def _set_course(self, course_id: int, kind: str, notify: bool, **changes) -> None:
        with self.lock:
            course = self.data.courses[course_id]
            for name, value in changes.items():
                setattr(course, name, value)
            if kind == "published":
                course.date_published = _iso(datetime.now(timezone.utc))
        body = {"type": f"course.{kind}", "timestamp": _iso(datetime.now(timezone.utc), "milliseconds"),
                "data": {"course": course.ref()}}
        self._notify(body, notify, f"course.{kind}:{course_id}")

    def _notify(self, body: dict, send: bool, what: str) -> None:
        if send and self.sender is not None:
            self.sender.send(body)
        else:
            with self.lock:
                self.lost.append(what)

    # -- traffic ---------------------------------------------------------------------------

    def start_traffic(self, rate: float, *, lose_share: float = 0.0, pass_share: float = 0.8,
                      unmatched_share: float = 0.1, seed: int = 0) -> None:
        """Add results at `rate` per second to published courses, each with a webhook
        (a share of them 'lost', to be repaired by reconciliation)."""
        if rate <= 0:
            return
        self._traffic_stop.clear()
        rng = random.Random(f"{seed}:traffic")

        def run():
            next_at = time.monotonic()
            while not self._traffic_stop.is_set():
                with self.lock:
                    courses = self.data.published_courses()
                    staff = self.data.employees
                if courses:
                    course = rng.choice(courses)
                    if staff and rng.random() >= unmatched_share:
                        person = rng.choice(staff)
                        email, first, last = _vary_email(rng, person.email), person.first_name, person.last_name
                    else:
                        email, first, last = f"extern.{rng.randint(0, 9999):04d}@{EXTERNAL_DOMAIN}", "Extern", "Konsult"
                    self.add_result(course.id, email, passed=rng.random() < pass_share,
                                    first_name=first, last_name=last,
                                    send_webhook=rng.random() >= lose_share)
                next_at += 1.0 / rate
                self._traffic_stop.wait(max(0.0, next_at - time.monotonic()))

        self._traffic = threading.Thread(target=run, name="simulator-traffic", daemon=True)
        self._traffic.start()

    def stop_traffic(self) -> None:
        self._traffic_stop.set()
        if self._traffic is not None:
            self._traffic.join(timeout=5)
            self._traffic = None

    def drain_webhooks(self, timeout: float = 30.0) -> bool:
        return True if self.sender is None else self.sender.drain(timeout)

    # -- faults and tokens -----------------------------------------------------------------

    def inject(self, status: int, *, times: int = 1, path: str = "/API/",
               retry_after: str | int | None = None) -> None:
        """Answer the next `times` requests under `path` with `status`."""
        with self.lock:
            self._faults.append(_Fault(status, times, path,
                                       None if retry_after is None else str(retry_after)))

    def inject_delay(self, seconds: float, *, times: int = 1, path: str = "/API/") -> None:
        """Stall the next `times` requests under `path` (to make a client time out)."""
        with self.lock:
            self._faults.append(_Fault(None, times, path, delay=seconds))

    def expire_tokens(self) -> None:
        """Forget every issued token: the next API call answers 401."""
        with self.lock:
            self._tokens.clear()

    def served(self, status: int | None = None, path: str = "") -> int:
        """How many requests whose path and query start with `path` were answered (with `status`)."""
        return len(self.requests(status, path))

    def requests(self, status: int | None = None, path: str = "") -> list[str]:
        """Paths with query of the requests answered so far (with `status`), in order."""
        with self.lock:
            return [p for _, p, s in self._served
                    if p.startswith(path) and (status is None or s == status)]

    # -- used by the app -------------------------------------------------------------------

    def _take_fault(self, path: str) -> _Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.times > 0 and path.startswith(fault.path):
                    fault.times -= 1
                    return fault
        return None

    def _issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self._tokens[token] = time.monotonic() + self.token_ttl
        return token

    def _token_valid(self, token: str) -> bool:
        with self.lock:
            expires = self._tokens.get(token)
        return expires is not None and time.monotonic() < expires

    def _record(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self._served.append((method, path, status))


class SimulatorApp:
    """The WSGI app: docs/infocaption-api.md under `/oauth2` and `/API`, control under `/_sim`.

    Control API (no auth; 127.0.0.1 only):
      GET  /_sim/stats                         requests served by status, webhooks sent
      GET  /_sim/dataset                       the data set as JSON (the `--data` format)
      POST /_sim/courses/<id>/<delete|unpublish|publish>?notify=1
      POST /_sim/results   {"courseId", "email", "passed", "completedAt"?, "sendWebhook"?}
      POST /_sim/faults    {"status"?, "times"?, "path"?, "retryAfter"?, "delay"?}
    """

    def __init__(self, sim: Simulator):
        self.sim = sim

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except Exception:  # noqa: BLE001 - a simulator bug answers 500 like a real server would
            log.exception("simulator error on %s", request.path)
            response = _json({"error": "internal"}, 500)
        if not request.path.startswith("/_sim"):
            self.sim._record(request.method, unquote(request.full_path).rstrip("?"), response.status_code)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/_sim/"):
            return self.control(request)
        fault = self.sim._take_fault(path)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return _json({"error": f"injected {fault.status}"}, fault.status, headers)
        if path == "/oauth2/token" and request.method == "POST":
            return self.token(request)
        if not path.startswith("/API/"):
            return _json({"error": "not found"}, 404)
        if request.method != "GET":
            return _json({"error": "method not allowed"}, 405)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not self.sim._token_valid(auth[7:].strip()):
            return _json({"error": "invalid_token"}, 401,
                         {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if path == "/API/public/guides":
            return self.guides(request)
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["API", "courses"] and parts[3] == "results":
            try:
                course_id = int(parts[2])
            except ValueError:
                return _json({"error": "not found"}, 404)
            return self.results(request, course_id)
        return _json({"error": "not found"}, 404)

    def token(self, request: Request) -> Response:
        auth = request.authorization
        if auth is None or auth.type != "basic" or (auth.username, auth.password) != (
                self.sim.client_id, self.sim.client_secret):
            return _json({"error": "invalid_client"}, 401)
        if request.form.get("grant_type") != "client_credentials":
            return _json({"error": "unsupported_grant_type"}, 400)
        return _json({"access_token": self.sim._issue_token(), "token_type": "Bearer",
                      "expires_in": self.sim.token_ttl})

    @staticmethod
    def _paging(request: Request) -> tuple[int, int] | Response:
        try:
            page = int(request.args.get("page", "1"))
            hits = int(request.args.get("hitsPerPage", "100"))
        except ValueError:
            return _json({"error": "page and hitsPerPage must be integers"}, 400)
        if page < 1 or hits < 1:
            return _json({"error": "page and hitsPerPage start at 1"}, 400)
        return page, min(hits, MAX_HITS_PER_PAGE)

    @staticmethod
    def _paged(items: list, page: int, hits: int) -> dict:
        total = len(items)
        return {
            "results": items[(page - 1) * hits: page * hits],
            "hitsPerPage": hits,
            "totalHits": total,
            "totalPages": (total + hits - 1) // hits,
            "currentPage": page,
        }

    def guides(self, request: Request) -> Response:
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        try:
            types = {int(t) for t in request.args.getlist("type[]")}
        except ValueError:
            return _json({"error": "type[] must be integers"}, 400)
        with self.sim.lock:
            listed = [c.to_api() for c in sorted(self.sim.data.courses.values(), key=lambda c: c.id)
                      if c.published and not c.deleted and (not types or c.guide_type in types)]
        return _json(self._paged(listed, *paging))

    def results(self, request: Request, course_id: int) -> Response:
        paging = self._paging(request)
        if isinstance(paging, Response):
            return paging
        since = None
        if "changedSince" in request.args:
            try:
                since = _parse_time(request.args["changedSince"])
            except ValueError:
                return _json({"error": "changedSince must be ISO-8601 with an offset"}, 400)
        with self.sim.lock:
            course = self.sim.data.courses.get(course_id)
            if course is None or course.deleted:
                return _json({"error": "course not found"}, 404)
            entries = self.sim.data.results.get(course_id, [])
            items = [e.payload for e in entries if since is None or e.changed >= since]
            body = self._paged(items, *paging)
        return _json(body)

    # -- control ---------------------------------------------------------------------------

    def control(self, request: Request) -> Response:
        sim = self.sim
        parts = request.path.strip("/").split("/")[1:]
        if request.method == "GET" and parts == ["stats"]:
            with sim.lock:
                by_status: dict[str, int] = {}
                for _, _, status in sim._served:
                    by_status[str(status)] = by_status.get(str(status), 0) + 1
                lost = len(sim.lost)
            sender = sim.sender
            return _json({
                "served": by_status, "lost_webhooks": lost,
                "webhooks": None if sender is None else {
                    "delivered": sender.delivered, "given_up": sender.given_up,
                    "attempts": sender.attempts, "pending": sender.pending(),
                    "answers": {str(k): v for k, v in sender.answers.items()},
                },
            })
        if request.method == "GET" and parts == ["dataset"]:
            with sim.lock:
                return _json(sim.data.to_json())
        if request.method != "POST":
            return _json({"error": "not found"}, 404)
        body = request.get_json(silent=True) or {}
        if len(parts) == 3 and parts[0] == "courses" and parts[2] in ("delete", "unpublish", "publish"):
            try:
                course_id = int(parts[1])
                action = getattr(sim, f"{parts[2]}_course")
                action(course_id, notify=request.args.get("notify") in ("1", "true"))
            except (ValueError, KeyError):
                return _json({"error": "no such course"}, 404)
            return _json({"ok": True})
        if parts == ["results"]:
            try:
                completed = body.get("completedAt")
                result = sim.add_result(
                    int(body["courseId"]), str(body["email"]), passed=bool(body.get("passed", True)),
                    completed_at=_parse_time(completed) if completed else None,
                    result_id=body.get("resultId"), send_webhook=bool(body.get("sendWebhook", True)))
            except (KeyError, ValueError, TypeError) as exc:
                return _json({"error": str(exc)}, 400)
            return _json(result, 201)
        if parts == ["faults"]:
            try:
                if body.get("delay"):
                    sim.inject_delay(float(body["delay"]), times=int(body.get("times", 1)),
                                     path=body.get("path", "/API/"))
                else:
                    sim.inject(int(body["status"]), times=int(body.get("times", 1)),
                               path=body.get("path", "/API/"), retry_after=body.get("retryAfter"))
            except (KeyError, ValueError, TypeError) as exc:
                return _json({"error": str(exc)}, 400)
            return _json({"ok": True}, 201)
        return _json({"error": "not found"}, 404)

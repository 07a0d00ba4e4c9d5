"""The InfoCaption API client: every detail of docs/infocaption-api.md lives in this module.

The results endpoint is not publicly documented by InfoCaption, so its paths, parameters,
field names and error codes are kept here and nowhere else; the rest of the service sees
`Course`, `Page` and `service.grants.pipeline.ResultRecord` only.

- OAuth2 client credentials: `POST /oauth2/token` with HTTP Basic; the token is cached and
  renewed shortly before it expires, or at once when a call answers 401.
- Pages start at 1; `Page.last` tells when to stop.
- 429 waits for `Retry-After` (seconds or an HTTP date, capped); 5xx, timeouts and dropped
  connections are retried with capped exponential backoff; after `max_attempts` the call
  raises `InfoCaptionUnavailable`.
- 404 on a course's results raises `CourseGone` (the course was deleted).
- Transport: `https://` only (`http://` in demo mode or to this machine), no redirects
  followed, an answer of at most `max_response_bytes`, and a call held at most
  `total_timeout_s` whatever the server trickles (`_Deadline`); a call that runs out of time is
  retried like a timeout.
- A record that cannot be read is logged (email masked), counted in
  `cb_infocaption_bad_records_total` and left out of `Page.items`; `Page.rejected` holds it as
  served with the reason, for the caller to count in `errors` and keep for ops. Unreadable: a
  missing or mistyped field, text that is not valid Unicode (a lone surrogate) or holds NUL,
  a time without an offset, or one before 2000-01-01 or more than a day in the future (the
  bounds of the webhook edge, docs/webhooks.md).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import math
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Iterator, Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from service.grants.pipeline import ResultRecord
from service.people.email import email_shape_problem
from service.platform.metrics import INFOCAPTION_BAD_RECORDS
from service.catalog.guides import COURSE_GUIDE_TYPES
from service.platform.observability import mask_email

log = logging.getLogger(__name__)

TOKEN_PATH = "/oauth2/token"
GUIDES_PATH = "/API/public/guides"
RESULTS_PATH = "/API/courses/{course_id}/results"
MAX_TEXT = 1000
# A time outside these bounds is not a real one (docs/webhooks.md bounds completedAt alike).
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
FUTURE_SLACK = timedelta(days=1)


class InfoCaptionError(RuntimeError):
    """InfoCaption did not give a usable answer."""


class InfoCaptionUnavailable(InfoCaptionError):
    """InfoCaption kept failing (5xx, 429, timeouts) through every retry."""


class InfoCaptionRefused(InfoCaptionError):
    """InfoCaption refused the request for good (credentials, 4xx) or answered nonsense."""


class CourseGone(InfoCaptionError):
    """The course's results endpoint answered 404: the course no longer exists."""

    def __init__(self, course_id: int):
        super().__init__(f"course {course_id} no longer exists in InfoCaption (404)")
        self.course_id = course_id


@dataclass(frozen=True)
class Course:
    """A course of InfoCaption's catalog."""

    id: int
    name: str
    guide_type: int
    published: bool
    date_published: datetime | None = None

    def as_dict(self) -> dict:
        """The shape `service.grants.pipeline.apply_course_status` takes."""
        return {"id": self.id, "name": self.name, "guide_type": self.guide_type}


@dataclass
class Page:
    """One page of a paged answer; `items` holds only the records that could be read."""

    items: list
    current_page: int
    total_pages: int
    total_hits: int
    hits_per_page: int
    received: int  # records on the page, readable or not
    skipped: int = 0  # records that could not be read
    rejected: list = field(default_factory=list)  # (record as served, why), one per skipped
    last: bool = field(init=False)

    def __post_init__(self) -> None:
        self.last = self.received == 0 or self.current_page >= self.total_pages


# --- transport limits -------------------------------------------------------------------------

MAX_RESPONSE_BYTES = 32 * 1024 * 1024  # a page of 500 results is well under 1 MiB
TOTAL_TIMEOUT_S = 120.0
_READ_CHUNK = 64 * 1024
_calls = threading.local()


class _Deadline:
    """Shut the socket of one call down when its total time is up.

    The (connect, read) timeout of requests is per socket read: a server that trickles a byte
    every few seconds holds a call for ever. A timer shuts the socket down instead, which ends
    a blocked read at once, headers or body alike.
    """

    def __init__(self, seconds: float):
        self.expired = False
        self._sock = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "_Deadline":
        _calls.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        _calls.deadline = None

    def watch(self, sock) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shut()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already


class _Watched:
    """A urllib3 connection that hands its socket to the calling thread's _Deadline."""

    def getresponse(self, *args, **kwargs):
        deadline = getattr(_calls, "deadline", None)
        if deadline is not None and self.sock is not None:
            deadline.watch(self.sock)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections obey _Deadline."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


@dataclass(frozen=True)
class Answer:
    """An answer read whole (within the limits): status, headers and body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self):
        try:
            return json.loads(self.content)
        except RecursionError:  # absurdly nested: not an answer we can use
            raise ValueError("the answer is nested too deeply") from None


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str, *, allow_http: bool) -> None:
    """Refuse a base URL that would send the client secret and tokens in clear."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InfoCaptionRefused(f"INFOCAPTION_BASE_URL must be an https:// URL, not {base_url!r}")
    if parts.scheme == "http" and not (allow_http or _is_local(parts.hostname)):
        raise InfoCaptionRefused(
            "INFOCAPTION_BASE_URL must use https://: over http:// the client secret and every "
            "token travel in clear (http:// is allowed only in demo mode and to localhost)")


class InfoCaptionClient:
    """Read InfoCaption's catalog and course results; one instance per process is enough."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        max_attempts: int = 8,
        backoff_first_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        retry_after_cap_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
        allow_http: bool = False,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        total_timeout_s: float = TOTAL_TIMEOUT_S,
    ):
        check_base_url(base_url, allow_http=allow_http)
        self.base_url = base_url.rstrip("/")
        self.max_response_bytes = max_response_bytes
        self.total_timeout_s = total_timeout_s
        self.client_id = client_id
        self.client_secret = client_secret
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff_first_s = backoff_first_s
        self.backoff_cap_s = backoff_cap_s
        self.retry_after_cap_s = retry_after_cap_s
        self.sleep = sleep
        self.session = session or requests.Session()
        self.session.headers.setdefault("Accept", "application/json")
        adapter = _DeadlineAdapter()
        for prefix in ("http://", "https://"):
            self.session.mount(prefix, adapter)
        self._token: str | None = None
        self._token_expires = 0.0  # time.monotonic() after which the token is renewed
        self._token_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "InfoCaptionClient":
        kwargs.setdefault("allow_http", settings.demo)
        return cls(settings.infocaption_base_url, settings.infocaption_client_id,
                   settings.infocaption_client_secret, **kwargs)

    @classmethod
    def for_tenant(cls, tenant, settings, **kwargs) -> "InfoCaptionClient":
        """A client with a tenant's host and credentials (service.tenants.tenants.Tenant)."""
        kwargs.setdefault("allow_http", settings.demo)
        return cls(tenant.infocaption_base_url, tenant.client_id, tenant.client_secret, **kwargs)

    def close(self) -> None:
        self.session.close()

    # --- the catalog --------------------------------------------------------------------------

    def courses_page(self, page: int = 1, hits_per_page: int = 100) -> Page:
        """One page of published courses (guide types 14 and 18)."""
        params = [("type[]", t) for t in sorted(COURSE_GUIDE_TYPES)]
        params += [("page", page), ("hitsPerPage", hits_per_page)]
        body = self._get_json(GUIDES_PATH, params)
        raws = _results_of(body)
        items = [c for c in (_parse_course(raw) for raw in raws) if c is not None]
        return page_of(body, items, len(raws), page, hits_per_page)

    def published_courses(self, hits_per_page: int = 200) -> list[Course]:
        """Every course InfoCaption currently publishes (all pages)."""
        found: dict[int, Course] = {}
        page = 1
        while True:
            got = self.courses_page(page, hits_per_page)
            for course in got.items:
                if course.published and course.guide_type in COURSE_GUIDE_TYPES:
                    found[course.id] = course
            if got.last:
                return list(found.values())
            page += 1

    # --- results ------------------------------------------------------------------------------

    def results_page(
        self,
        course: dict,
        page: int = 1,
        hits_per_page: int = 500,
        changed_since: datetime | None = None,
    ) -> Page:
        """One page of a course's results as ResultRecords; raises CourseGone on 404.

        `course` is `{"id", "name", "guide_type"}`: the results endpoint does not repeat them.
        """
        params: list[tuple[str, object]] = [("page", page), ("hitsPerPage", hits_per_page)]
        if changed_since is not None:
            params.append(("changedSince", _iso(changed_since)))
        path = RESULTS_PATH.format(course_id=int(course["id"]))
        body = self._get_json(path, params, gone=lambda: CourseGone(int(course["id"])))
        raws = _results_of(body)
        items, rejected = [], []
        for raw in raws:
            record = _parse_result(raw, course, rejected)
            if record is not None:
                items.append(record)
        got = page_of(body, items, len(raws), page, hits_per_page)
        got.rejected = rejected
        return got

    def result_pages(
        self,
        course: dict,
        *,
        hits_per_page: int = 500,
        changed_since: datetime | None = None,
        start_page: int = 1,
    ) -> Iterator[Page]:
        """Every page of a course's results from `start_page` on."""
        page = start_page
        while True:
            got = self.results_page(course, page, hits_per_page, changed_since)
            yield got
            if got.last:
                return
            page += 1

    def course_exists(self, course_id: int) -> bool:
        """Tell whether a course still exists (its results endpoint does not answer 404)."""
        try:
            self.results_page({"id": course_id, "name": "", "guide_type": 0}, 1, 1)
        except CourseGone:
            return False
        return True

    # --- HTTP ---------------------------------------------------------------------------------

    def token(self) -> str:
        """A valid access token, fetched or renewed when needed."""
        with self._token_lock:
            if self._token is None or time.monotonic() >= self._token_expires:
                self._fetch_token()
            return self._token

    def invalidate_token(self) -> None:
        with self._token_lock:
            self._token = None

    def _fetch_token(self) -> None:
        response = self._send(
            "POST", TOKEN_PATH,
            auth=(self.client_id, self.client_secret),
            data={"grant_type": "client_credentials"},
        )
        if response.status_code in (400, 401, 403):
            raise InfoCaptionRefused(
                f"InfoCaption refused the client credentials ({response.status_code})")
        if response.status_code != 200:
            raise InfoCaptionRefused(f"token endpoint answered {response.status_code}")
        try:
            body = response.json()
            token = body["access_token"]
            expires_in = float(body.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise InfoCaptionRefused("token endpoint answered without an access_token") from None
        if not isinstance(token, str) or not token:
            raise InfoCaptionRefused("token endpoint answered an empty access_token")
        # Renew a little early so that a token never expires in flight.
        margin = min(60.0, expires_in / 10)
        self._token = token
        self._token_expires = time.monotonic() + max(0.0, expires_in - margin)

    def _get_json(self, path: str, params, *, gone: Callable[[], Exception] | None = None) -> dict:
        renewed = False
        while True:
            token = self.token()
            response = self._send("GET", path, params=params,
                                  headers={"Authorization": f"Bearer {token}"})
            if response.status_code == 401 and not renewed:
                # The token expired early or was revoked: renew once and try again.
                renewed = True
                with self._token_lock:
                    if self._token == token:
                        self._token = None
                continue
            break
        if response.status_code == 404 and gone is not None:
            raise gone()
        if response.status_code != 200:
            raise InfoCaptionRefused(f"GET {path} answered {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise InfoCaptionRefused(f"GET {path} answered something that is not JSON") from None
        if not isinstance(body, dict):
            raise InfoCaptionRefused(f"GET {path} answered JSON that is not an object")
        return body

    def _send(self, method: str, path: str, **kwargs) -> Answer:
        """Send one request, retrying 429, 5xx, timeouts and dropped connections."""
        url = self.base_url + path
        for attempt in range(1, self.max_attempts + 1):
            last = attempt == self.max_attempts
            deadline = _Deadline(self.total_timeout_s)
            try:
                with deadline:
                    response = self.session.request(method, url, timeout=self.timeout, stream=True,
                                                    allow_redirects=False, **kwargs)
                    answer = self._read(response, method, path)
                if deadline.expired:
                    # A socket shut down between headers can read as a complete, empty answer.
                    raise requests.Timeout("total time limit")
            except (requests.Timeout, requests.ConnectionError,
                    requests.exceptions.ChunkedEncodingError) as exc:
                why = f"no answer within {self.total_timeout_s:g} s" if deadline.expired else exc.__class__.__name__
                if last:
                    raise InfoCaptionUnavailable(f"{method} {path}: {why} after {attempt} attempts") from exc
                delay = self._backoff(attempt)
                log.warning("InfoCaption %s %s: %s; retry %d in %.1fs", method, path, why, attempt, delay)
                self.sleep(delay)
                continue
            status = answer.status_code
            if status == 429 or status >= 500:
                if last:
                    raise InfoCaptionUnavailable(f"{method} {path} answered {status} {attempt} times")
                delay = self._retry_after(answer) if status == 429 else None
                if delay is None:
                    delay = self._backoff(attempt)
                log.warning("InfoCaption %s %s answered %d; retry %d in %.1fs",
                            method, path, status, attempt, delay)
                self.sleep(delay)
                continue
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, response: requests.Response, method: str, path: str) -> Answer:
        """Read an answer whole, refusing one over max_response_bytes (Content-Length or not)."""
        with response:
            status = response.status_code
            if status == 429 or status >= 500:
                return Answer(status, response.headers, b"")  # retried: the body does not matter
            too_large = InfoCaptionRefused(
                f"{method} {path}: the answer is over {self.max_response_bytes} bytes")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_response_bytes:
                raise too_large
            chunks, size = [], 0
            for chunk in response.iter_content(_READ_CHUNK):
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise too_large
                chunks.append(chunk)
            return Answer(status, response.headers, b"".join(chunks))

    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff_cap_s, self.backoff_first_s * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)  # jitter: retries of many callers spread out

    def _retry_after(self, response: Answer) -> float | None:
        raw = (response.headers.get("Retry-After") or "").strip()
        if not raw:
            return None
        try:
            seconds = float(raw)
        except ValueError:
            try:
                when = parsedate_to_datetime(raw)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            seconds = (when - datetime.now(timezone.utc)).total_seconds()
        if math.isnan(seconds):
            return None
        return min(max(0.0, seconds), self.retry_after_cap_s)


# --- parsing --------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("changed_since must carry a UTC offset")
    # Whole seconds, rounded down: the window can only grow, never miss a change.
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _results_of(body: dict) -> list:
    raws = body.get("results")
    if raws is None:
        return []
    if not isinstance(raws, list):
        raise InfoCaptionRefused("the answer's 'results' is not a list")
    return raws


def _int_field(body: dict, name: str, default: int) -> int:
    value = body.get(name)
    if isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def page_of(body: dict, items: list, received: int, page: int, hits_per_page: int) -> Page:
    hits = max(1, _int_field(body, "hitsPerPage", hits_per_page))
    total_hits = _int_field(body, "totalHits", received)
    current = _int_field(body, "currentPage", page)
    if "totalPages" in body:
        total_pages = _int_field(body, "totalPages", current)
    else:  # no page count: a short page is the last one
        total_pages = current + (1 if received >= hits else 0)
    skipped = received - len(items)
    return Page(items, current, total_pages, total_hits, hits, received, skipped)


class _Bad(ValueError):
    """A record field that cannot be used."""


def _text(value, name: str, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise _Bad(f"{name} is missing")
        return None
    if not isinstance(value, str):
        raise _Bad(f"{name} is not a string")
    if "\x00" in value or len(value) > MAX_TEXT:
        raise _Bad(f"{name} is too long or holds NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Bad(f"{name} is not valid Unicode (a lone surrogate)") from None
    if required and not value.strip():
        raise _Bad(f"{name} is empty")
    return value


def _moment(value, name: str, *, required: bool) -> datetime | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _Bad(f"{name} is missing or not a string")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _Bad(f"{name} is not ISO-8601") from None
    if moment.tzinfo is None:
        raise _Bad(f"{name} has no UTC offset")
    try:
        absurd = not EARLIEST <= moment <= datetime.now(timezone.utc) + FUTURE_SLACK
    except OverflowError:  # year 1 or 9999 with an offset beyond the calendar's ends
        absurd = True
    if absurd:
        raise _Bad(f"{name} is before 2000-01-01 or more than a day in the future")
    return moment


def _parse_result(raw, course: dict, rejected: list | None = None) -> ResultRecord | None:
    """Read one result record; log, count, add to `rejected` and return None when it cannot be used."""
    email = None
    rid = None
    try:
        if not isinstance(raw, dict):
            raise _Bad("the record is not an object")
        rid = raw.get("resultId")
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)
        rid = _text(rid, "resultId", required=True)
        user = raw.get("user")
        if not isinstance(user, dict):
            raise _Bad("user is missing")
        email = _text(user.get("email"), "user.email", required=True)
        if email_shape_problem(email):
            raise _Bad("user.email is not an email address")
        passed = raw.get("passed")
        if not isinstance(passed, bool):
            raise _Bad("passed is not a boolean")
        score = raw.get("score")
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise _Bad("score is not a number")
        return ResultRecord(
            id=rid,
            course_id=int(course["id"]),
            course_name=course["name"],
            guide_type=int(course["guide_type"]),
            email=email,
            first_name=_text(user.get("firstName"), "user.firstName", required=False),
            last_name=_text(user.get("lastName"), "user.lastName", required=False),
            passed=passed,
            score=score,
            completed_at=_moment(raw.get("completedAt"), "completedAt", required=True),
            changed_at=_moment(raw.get("changedAt"), "changedAt", required=False),
        )
    except _Bad as bad:
        INFOCAPTION_BAD_RECORDS.inc()
        who = mask_email(email if isinstance(email, str) else None)
        shown = "-" if rid is None else ascii(str(rid)[:100])  # the id may be what is unreadable
        log.warning("InfoCaption result skipped: %s (course %s, result %s, participant %s)",
                    bad, course.get("id"), shown, who)
        if rejected is not None:
            rejected.append((raw, str(bad)))
        return None


def _parse_course(raw) -> Course | None:
    """Read one catalog record; log, count and return None when it cannot be used."""
    try:
        if not isinstance(raw, dict):
            raise _Bad("the record is not an object")
        cid, guide_type = raw.get("id"), raw.get("guideType")
        if isinstance(cid, bool) or not isinstance(cid, int) or cid < 1:
            raise _Bad("id is not a positive integer")
        if isinstance(guide_type, bool) or not isinstance(guide_type, int):
            raise _Bad("guideType is not an integer")
        name = _text(raw.get("name"), "name", required=False) or f"course {cid}"
        published = raw.get("published", True)
        try:
            date_published = _moment(raw.get("datePublished"), "datePublished", required=False)
        except _Bad:
            date_published = None  # informative only; a date without a time is not an instant
        return Course(cid, name, guide_type, published is True, date_published)
    except _Bad as bad:
        INFOCAPTION_BAD_RECORDS.inc()
        log.warning("InfoCaption catalog record skipped: %s", bad)
        return None

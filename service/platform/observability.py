"""Logging configured once per process, email masking, and Sentry without personal data.

Every process (web, worker, scheduler, CLI) logs one JSON object per line to stderr. Emails,
bearer tokens and secrets are masked by the formatter itself, so a caller that forgets to mask
still leaks nothing. Sentry events pass through `before_send`, which does the same to the whole
event and drops the fields that name a person.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import threading

from gunicorn.glogging import Logger as _GunicornLogger

# \w: an address with a non-ASCII local part (åsa@kommun.se) is masked whole, not from the å on.
EMAIL = re.compile(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[^\W\d_]{2,}")
BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._\-~+/=]+")
SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+|cbt_[A-Za-z0-9_\-]+")
FILTERED = "[Filtered]"
# Keys whose values are credentials or name a person, wherever they sit in an event or a log
# field: the webhook's `user` object, our result rows, HTTP headers.
SENSITIVE_KEYS = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "token", "access_token",
    "refresh_token", "password", "secret", "client_secret", "webhook-signature", "x-api-key",
    "email", "email_normalized", "first_name", "last_name", "firstname", "lastname", "user",
    "ip_address", "x-forwarded-for", "x-real-ip",
})
# Extra fields of a log record that go into the JSON line (see workers/results.py).
LOG_FIELDS = ("event", "webhook_id", "result_id", "outcome", "queue", "link_id", "course_id",
              "count", "duration_ms")
_configured = False
_process_role: str | None = None


def mask_email(email: str | None) -> str:
    """Return 'a***@kommun.se' for 'anna@kommun.se' (no more than one letter of the person)."""
    if not email:
        return "-"
    local, at, domain = email.strip().partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def redact_email(email: str) -> str:
    """Return '[email at kommun.se]': not even the shape of an address is left (Sentry)."""
    return f"[email at {email.rpartition('@')[2]}]"


def scrub_text(text: str, *, strict: bool = False) -> str:
    """Mask every email address, bearer token and secret in a piece of text.

    Log lines keep one letter ('a***@kommun.se'); `strict` leaves no address shape at all
    ('[email at kommun.se]'), for what leaves the process (Sentry).
    """
    mask = redact_email if strict else mask_email
    text = EMAIL.sub(lambda m: mask(m.group(0)), text)
    text = BEARER.sub("Bearer [Filtered]", text)
    return SECRET.sub(FILTERED, text)


def scrub(value):
    """Return a copy of a JSON-like value with emails, tokens, secrets and names removed."""
    if isinstance(value, str):
        return scrub_text(value, strict=True)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if str(k).lower() in SENSITIVE_KEYS:
                out[k] = FILTERED
            else:
                out[k] = scrub(v)
        return out
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def set_process_role(role: str | None) -> None:
    """Name this process (web, worker, scheduler) in every log line it writes."""
    global _process_role
    _process_role = role


class JsonFormatter(logging.Formatter):
    """One machine-readable line per record; emails masked even if a caller forgot."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub_text(record.getMessage()),
        }
        role = getattr(record, "process_role", None) or _process_role
        if role:
            entry["process_role"] = role
        for key in LOG_FIELDS:
            if hasattr(record, key):
                entry[key] = scrub(getattr(record, key))
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            entry.update(_access_fields(record.args))
        if record.exc_info:
            entry["exc"] = scrub_text(self.formatException(record.exc_info))
        line = json.dumps(entry, ensure_ascii=False, default=str)
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from hostile input: escape it, keep the line
            line = line.encode("utf-8", "backslashreplace").decode("utf-8")
        return line


def _access_fields(atoms: dict) -> dict:
    """The parts of a gunicorn access record worth a field of their own (no client address)."""
    fields = {
        "method": atoms.get("m"),
        "path": scrub_text(str(atoms.get("U", ""))),
        "status": atoms.get("s"),
        "duration_ms": round(int(atoms.get("D", 0) or 0) / 1000, 1),
    }
    return {k: v for k, v in fields.items() if v not in (None, "")}


def configure_logging(level: str | int = "INFO") -> None:
    """Configure the root logger once per process."""
    global _configured
    if _configured:
        return
    import time

    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("amqp", "kombu", "urllib3", "psycopg.pool", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Whatever is not caught, in any thread, is logged as one masked JSON line too (Sentry's
    # integrations, installed later, wrap these hooks and still call them).
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    _configured = True


_uncaught = logging.getLogger("uncaught")


def _log_uncaught(exc_type, exc, tb) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    _uncaught.critical("uncaught %s; the process stops", exc_type.__name__, exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    _uncaught.critical("uncaught %s in thread %s", args.exc_type.__name__, name,
                       exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


# --- Sentry ---------------------------------------------------------------------------------


def _queue_of_failing_worker(hint: dict) -> str | None:
    """Name the queue whose consumer raised, by looking (in process only) at the traceback."""
    exc_info = (hint or {}).get("exc_info")
    tb = exc_info[2] if exc_info and len(exc_info) == 3 else None
    kind = None
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if owner is not None and hasattr(owner, "topo") and isinstance(getattr(owner, "kind", None), str):
            kind = owner.kind  # a BatchWorker: the innermost one wins
        tb = tb.tb_next
    return kind


def before_send(event, hint):
    """Strip personal data, tokens and secrets from a Sentry event before it leaves the process.

    Also tags an error raised inside a queue consumer with its queue, and groups dead-letter
    reports by queue, event type and error class rather than by their (varying) message.
    """
    event = scrub(event)
    if isinstance(event, dict) and isinstance(event.get("user"), str):
        event.pop("user")  # Sentry's own user context: never sent (send_default_pii is off)
    queue = _queue_of_failing_worker(hint)
    if queue is not None:
        tags = event.setdefault("tags", {})
        if isinstance(tags, dict):
            tags.setdefault("queue", queue)
    message = _message_of(event)
    tags = event.get("tags") if isinstance(event, dict) else None
    if message.startswith("event dead-lettered:") and isinstance(tags, dict):
        error_class = message.split(":", 2)[1].strip() if message.count(":") >= 2 else "-"
        event["fingerprint"] = ["dead-letter", str(tags.get("queue", "-")),
                                str(tags.get("event_type", "-")), error_class]
    return event


def _message_of(event) -> str:
    if not isinstance(event, dict):
        return ""
    message = event.get("message")
    if isinstance(message, str):
        return message
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        return str(logentry.get("formatted") or logentry.get("message") or "")
    return ""


def init_sentry(dsn: str | None, process: str, environment: str = "production", transport=None) -> bool:
    """Start sentry-sdk for this process when a DSN is set; return whether it was started.

    Also names the process in its log lines, DSN or not (web, worker and scheduler call this
    at boot).
    """
    set_process_role(process)
    if not dsn:
        return False
    import sentry_sdk

    options = dict(
        dsn=dsn,
        environment=environment,
        send_default_pii=False,
        # Request bodies (webhooks carry emails and names) and frame locals (the events being
        # processed) are never sent; before_send scrubs what is left.
        max_request_body_size="never",
        include_local_variables=False,
        before_send=before_send,
        before_send_transaction=before_send,
        traces_sample_rate=0.0,
    )
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
    # The global scope: the tag reaches events of every thread, whenever it was started.
    sentry_sdk.get_global_scope().set_tag("process", process)
    return True


WEBHOOK_PATH = "/webhooks/infocaption"  # the tenant `default`'s; another's is WEBHOOK_PATH/<slug>
_TENANT_WEBHOOKS = WEBHOOK_PATH + "/"


class AccessLogger(_GunicornLogger):
    """gunicorn's logger, without an access line for each accepted webhook, of any tenant.

    An accepted webhook is logged once where it matters, by the worker ("event handled", with
    its webhook id and outcome), and counted in cb_webhooks_total; a JSON access line for each
    of them cost about a seventh of the web process's CPU under load. Every other request,
    rejected webhooks included, keeps its access line.
    """

    def access(self, resp, req, environ, request_time):
        if resp.status_code == 202 and (req.path == WEBHOOK_PATH or req.path.startswith(_TENANT_WEBHOOKS)):
            return
        super().access(resp, req, environ, request_time)

"""Logging configured once per process, email masking, and Sentry without personal data."""
from __future__ import annotations

import json
import logging
import re
import sys

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9._\-~+/=]+")
SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+|cbt_[A-Za-z0-9_\-]+")
_configured = False


def mask_email(email: str | None) -> str:
    """Return 'a***@kommun.se' for 'anna@kommun.se' (no more than one letter of the person)."""
    if not email:
        return "-"
    local, at, domain = email.strip().partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def scrub_text(text: str) -> str:
    """Mask every email address, bearer token and secret in a piece of text."""
    text = EMAIL.sub(lambda m: mask_email(m.group(0)), text)
    text = BEARER.sub("Bearer [Filtered]", text)
    return SECRET.sub("[Filtered]", text)


def scrub(value):
    """Return a copy of a JSON-like value with emails, tokens and secrets masked."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = str(k).lower()
            if key in ("authorization", "cookie", "token", "password", "secret", "webhook-signature"):
                out[k] = "[Filtered]"
            else:
                out[k] = scrub(v)
        return out
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


class _JsonFormatter(logging.Formatter):
    """One machine-readable line per record; emails masked even if a caller forgot."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub_text(record.getMessage()),
        }
        for key in ("event", "webhook_id", "result_id", "outcome", "process_role"):
            if hasattr(record, key):
                entry[key] = scrub(getattr(record, key))
        if record.exc_info:
            entry["exc"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str | int = "INFO") -> None:
    """Configure the root logger once per process."""
    global _configured
    if _configured:
        return
    import time

    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("amqp", "kombu", "urllib3", "psycopg.pool", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = True


def before_send(event, hint):
    """Strip emails, tokens and secrets from a Sentry event before it leaves the process."""
    return scrub(event)


def init_sentry(dsn: str | None, process: str, environment: str = "production", transport=None) -> bool:
    """Start sentry-sdk for this process when a DSN is set; return whether it was started."""
    if not dsn:
        return False
    import sentry_sdk

    options = dict(
        dsn=dsn,
        environment=environment,
        send_default_pii=False,
        before_send=before_send,
        before_send_transaction=before_send,
        traces_sample_rate=0.0,
    )
    if transport is not None:
        options["transport"] = transport
    sentry_sdk.init(**options)
    sentry_sdk.set_tag("process", process)
    return True

"""Settings from environment variables, read in one place (docs/processes.md)."""
from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The demo's settings, published here on purpose: only DEMO=1 uses them (`make run` sets it),
# and `competence-bridge simulate` signs its webhooks with the same secret.
DEMO_WEBHOOK_SECRET = "whsec_ZGVtby1zZWNyZXQtY29tcGV0ZW5jZS1icmlkZ2U="
DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"
DEMO_SIMULATOR_URL = "http://127.0.0.1:8001"
# Encrypts subscription secrets in demo mode only (docs/events.md, "Secrets"); a Fernet key.
DEMO_ENCRYPTION_KEY = "ZGVtby1lbmNyeXB0aW9uLWtleS1jb21wZXRlbmNlISE="
DEMO_MAIL_FROM = "kompetens@demo.invalid"
# Signs the console's session cookies in demo mode only (docs/console.md, "Sessions").
DEMO_SECRET_KEY = "demo-secret-key-of-the-competence-bridge-console"
MIN_SECRET_KEY_CHARS = 32
# The lead times of grant.expiring notices and reminder mails, in days (EXPIRY_NOTICE_DAYS).
DEFAULT_EXPIRY_NOTICE_DAYS = (90, 30, 7)
# Outside demo mode these must be set: the process stops at start naming the first one missing.
REQUIRED = ("INFOCAPTION_BASE_URL", "INFOCAPTION_CLIENT_ID", "INFOCAPTION_CLIENT_SECRET",
            "INFOCAPTION_WEBHOOK_SECRETS")
MIN_SECRET_BYTES = 24
_ON, _OFF = {"1", "true", "yes", "on"}, {"", "0", "false", "no", "off"}


class ConfigError(RuntimeError):
    """A setting is missing or malformed."""


def _int(env: dict, name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None
    broker_url: str | None
    infocaption_base_url: str
    infocaption_client_id: str
    infocaption_client_secret: str
    webhook_secrets: tuple[str, ...]
    sentry_dsn: str | None
    port: int
    reconcile_interval_s: int
    time_zone: str
    queue_prefix: str
    batch_size: int
    batch_wait_ms: int
    demo: bool
    environment: str = "production"
    rejected_retention_days: int = 30
    # Outgoing events and reminder mails (docs/events.md).
    encryption_keys: tuple[str, ...] = ()
    expiry_notice_days: tuple[int, ...] = DEFAULT_EXPIRY_NOTICE_DAYS
    smtp_url: str | None = None
    mail_from: str | None = None
    subscriber_allow_private: bool = False
    ca_bundle: str | None = None
    secret_key: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url


def _flag(env: dict, name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in _ON | _OFF:
        raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
    return raw in _ON


def _webhook_secrets(raw: str) -> tuple[str, ...]:
    """Split and check INFOCAPTION_WEBHOOK_SECRETS; the message never shows a secret."""
    return check_webhook_secrets(tuple(s for s in re.split(r"[\s,]+", raw) if s),
                                 "INFOCAPTION_WEBHOOK_SECRETS")


def check_webhook_secrets(secrets: tuple[str, ...], name: str) -> tuple[str, ...]:
    """Check `whsec_` secrets (of the environment or of a tenant); never shows one."""
    for position, secret in enumerate(secrets, start=1):
        where = f"{name} (secret {position} of {len(secrets)})"
        if not secret.startswith("whsec_"):
            raise ConfigError(f"{where} must start with 'whsec_'")
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where} is not valid base64 after 'whsec_'") from None
        if len(key) < MIN_SECRET_BYTES:
            raise ConfigError(f"{where} decodes to {len(key)} bytes; at least "
                              f"{MIN_SECRET_BYTES} are required")
    return secrets


def _encryption_keys(raw: str) -> tuple[str, ...]:
    """Split and check ENCRYPTION_KEY: Fernet keys (url-safe base64 of 32 bytes), first encrypts."""
    keys = tuple(k for k in re.split(r"[\s,]+", raw) if k)
    for position, key in enumerate(keys, start=1):
        try:
            decoded = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            decoded = b""
        if len(decoded) != 32:
            raise ConfigError(f"ENCRYPTION_KEY (key {position} of {len(keys)}) is not a Fernet key "
                              "(url-safe base64 of 32 bytes)")
    return keys


def _expiry_notice_days(raw: str) -> tuple[int, ...]:
    """EXPIRY_NOTICE_DAYS: lead times in days, e.g. `90,30,7`; empty: the default."""
    if not raw.strip():
        return DEFAULT_EXPIRY_NOTICE_DAYS
    try:
        days = sorted({int(part) for part in re.split(r"[\s,]+", raw.strip()) if part}, reverse=True)
    except ValueError:
        raise ConfigError(f"EXPIRY_NOTICE_DAYS must be whole numbers of days, got {raw!r}") from None
    if not days or days[-1] < 1 or days[0] > 3660:
        raise ConfigError(f"EXPIRY_NOTICE_DAYS must be days between 1 and 3660, got {raw!r}")
    return tuple(days)


def _smtp_url(raw: str) -> str | None:
    """SMTP_URL: `smtp://host:port` or `smtps://user:pass@host:port`; the message hides the password."""
    raw = raw.strip()
    if not raw:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError("SMTP_URL is not a URL (smtp://host:port or smtps://user:pass@host:port)") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError("SMTP_URL must be smtp://host:port or smtps://user:pass@host:port")
    return raw


def _secret_key(raw: str, demo: bool) -> str:
    """SECRET_KEY: signs console sessions; at least 32 characters; the demo's in demo mode."""
    raw = raw.strip()
    if not raw:
        return DEMO_SECRET_KEY if demo else ""
    if len(raw) < MIN_SECRET_KEY_CHARS:
        raise ConfigError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_CHARS} characters "
                          "(e.g. python3 -c \"import secrets; print(secrets.token_urlsafe(48))\")")
    return raw


def load(env: dict | None = None) -> Settings:
    """Read the settings, failing fast with a message that names the variable."""
    env = dict(os.environ if env is None else env)
    demo = _flag(env, "DEMO")
    if not demo:
        missing = [name for name in REQUIRED if not env.get(name, "").strip()]
        if missing:
            raise ConfigError(
                f"{missing[0]} is required"
                + (f" (so are {', '.join(missing[1:])})" if missing[1:] else "")
                + "; set DEMO=1 to run the demo against the local simulator instead")
    base_url = env.get("INFOCAPTION_BASE_URL", "").strip()
    secrets = _webhook_secrets(env.get("INFOCAPTION_WEBHOOK_SECRETS", "").strip())
    if not secrets:
        secrets = (DEMO_WEBHOOK_SECRET,)  # only reached in demo mode (REQUIRED above)
    time_zone = env.get("TIME_ZONE", "").strip() or "Europe/Stockholm"
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"TIME_ZONE {time_zone!r} is not a known IANA time zone") from None
    smtp_url = _smtp_url(env.get("SMTP_URL", ""))
    mail_from = env.get("MAIL_FROM", "").strip() or (DEMO_MAIL_FROM if demo else "")
    if smtp_url and not mail_from:
        raise ConfigError("MAIL_FROM is required when SMTP_URL is set (the sender of reminder mails)")
    prefix = env.get("QUEUE_PREFIX", "").strip() or "competence_bridge"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", prefix):
        raise ConfigError("QUEUE_PREFIX may hold letters, digits, '_', '.', '-' only")
    return Settings(
        data_dir=Path(env.get("DATA_DIR", "").strip() or ".data").resolve(),
        database_url=env.get("DATABASE_URL", "").strip() or None,
        broker_url=env.get("BROKER_URL", "").strip() or None,
        infocaption_base_url=(base_url or DEMO_SIMULATOR_URL).rstrip("/"),
        infocaption_client_id=env.get("INFOCAPTION_CLIENT_ID", "").strip()
        or (DEMO_CLIENT_ID if demo else ""),
        infocaption_client_secret=env.get("INFOCAPTION_CLIENT_SECRET", "").strip()
        or (DEMO_CLIENT_SECRET if demo else ""),
        webhook_secrets=secrets,
        sentry_dsn=env.get("SENTRY_DSN", "").strip() or None,
        port=_int(env, "PORT", 8000),
        reconcile_interval_s=_int(env, "RECONCILE_INTERVAL_S", 300),
        time_zone=time_zone,
        queue_prefix=prefix,
        batch_size=_int(env, "BATCH_SIZE", 500),
        batch_wait_ms=_int(env, "BATCH_WAIT_MS", 25),
        demo=demo,
        environment=env.get("ENVIRONMENT", "").strip() or ("demo" if demo else "production"),
        rejected_retention_days=_int(env, "REJECTED_RETENTION_DAYS", 30),
        encryption_keys=_encryption_keys(env.get("ENCRYPTION_KEY", "")) or
        ((DEMO_ENCRYPTION_KEY,) if demo else ()),
        expiry_notice_days=_expiry_notice_days(env.get("EXPIRY_NOTICE_DAYS", "")),
        smtp_url=smtp_url,
        mail_from=mail_from or None,
        subscriber_allow_private=_flag(env, "SUBSCRIBER_ALLOW_PRIVATE"),
        secret_key=_secret_key(env.get("SECRET_KEY", ""), demo),
        ca_bundle=(env.get("REQUESTS_CA_BUNDLE", "").strip() or env.get("SSL_CERT_FILE", "").strip()
                   or None),
    )


# --- what processes read before (or besides) the settings ------------------------------------

# The metrics port of the processes that are not gunicorn (METRICS_PORT overrides; 0 = off).
DEFAULT_METRICS_PORTS = {"worker": 9101, "scheduler": 9102}
WEB_WORKERS = 2  # gunicorn processes of `web` (WEB_CONCURRENCY overrides)
WEB_THREADS = 8  # threads in each (WEB_THREADS overrides)


def metrics_port(role: str, env: dict | None = None) -> int | None:
    """Return the port this process serves its metrics on, or None when METRICS_PORT=0."""
    env = os.environ if env is None else env
    raw = (env.get("METRICS_PORT") or "").strip()
    if not raw:
        return DEFAULT_METRICS_PORTS[role]
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"METRICS_PORT must be an integer, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"METRICS_PORT must be between 0 and 65535, got {port}")
    return port or None


def log_level(env: dict | None = None) -> str:
    """LOG_LEVEL (INFO by default): read before the settings, so that their errors are logged."""
    env = os.environ if env is None else env
    return (env.get("LOG_LEVEL") or "").strip().upper() or "INFO"


@dataclass(frozen=True)
class WebServer:
    """How `competence-bridge web` runs gunicorn: processes, threads, the address it binds."""

    workers: int
    threads: int
    host: str


def web_server(env: dict | None = None) -> WebServer:
    """WEB_CONCURRENCY, WEB_THREADS and WEB_HOST (0.0.0.0; 127.0.0.1 behind the buffering proxy)."""
    env = os.environ if env is None else env
    return WebServer(_int(env, "WEB_CONCURRENCY", WEB_WORKERS), _int(env, "WEB_THREADS", WEB_THREADS),
                     (env.get("WEB_HOST") or "").strip() or "0.0.0.0")


def prometheus_multiproc_dir(env: dict | None = None) -> str | None:
    """PROMETHEUS_MULTIPROC_DIR: where gunicorn's workers share their counters (gunicorn_conf)."""
    env = os.environ if env is None else env
    return (env.get("PROMETHEUS_MULTIPROC_DIR") or "").strip() or None

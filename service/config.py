"""Settings from environment variables, read in one place (CONTRACT section 6)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The demo secret is shared with `competence-bridge simulate`; it is only used when
# INFOCAPTION_BASE_URL is unset, i.e. when the service talks to the local simulator.
DEMO_WEBHOOK_SECRET = "whsec_ZGVtby1zZWNyZXQtY29tcGV0ZW5jZS1icmlkZ2U="
DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"
DEMO_SIMULATOR_URL = "http://127.0.0.1:8001"


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


def load(env: dict | None = None) -> Settings:
    """Read the settings, failing fast with a message that names the variable."""
    env = dict(os.environ if env is None else env)
    base_url = env.get("INFOCAPTION_BASE_URL", "").strip()
    demo = not base_url
    secrets_raw = env.get("INFOCAPTION_WEBHOOK_SECRETS", "").strip()
    secrets = tuple(s for s in re.split(r"[\s,]+", secrets_raw) if s)
    if not secrets:
        if not demo:
            raise ConfigError(
                "INFOCAPTION_WEBHOOK_SECRETS is required when INFOCAPTION_BASE_URL is set "
                "(one or more whsec_... values separated by spaces or commas)"
            )
        secrets = (DEMO_WEBHOOK_SECRET,)
    for secret in secrets:
        if not secret.startswith("whsec_"):
            raise ConfigError("INFOCAPTION_WEBHOOK_SECRETS: every secret must start with 'whsec_'")
    time_zone = env.get("TIME_ZONE", "").strip() or "Europe/Stockholm"
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"TIME_ZONE {time_zone!r} is not a known IANA time zone") from None
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
    )

"""Persistence: the connection pool, the embedded PostgreSQL and the named SQL queries."""
from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from service.platform import tenancy
from service.platform.config import Settings

log = logging.getLogger(__name__)

# Named SQL lives beside the code that runs it, in every package of the service and its
# workers (migrations excepted: they are applied, not named).
SQL_ROOTS = tuple(Path(__file__).resolve().parents[2] / pkg for pkg in ("service", "workers"))
_BLOCK = re.compile(r"^-- name: (?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^-- include: (?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def _quiet_pgserver() -> None:
    """Keep pgserver's chatter (command lines, initdb's report) out of every command's output."""
    # Its INFO lines dump whole command outputs; its warnings and errors still show.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    # platformdirs warns (RuntimeDirWarning, a UserWarning) when XDG_RUNTIME_DIR is unset, as
    # under systemd services and in containers; pgserver then keeps its sockets in the data dir.
    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")


def embedded_database_running(settings: Settings) -> bool:
    """Tell whether the embedded PostgreSQL under the data dir runs, without starting it."""
    _quiet_pgserver()
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(settings.data_dir / "pg")
    return info is not None and info.is_running()


def database_url(settings: Settings) -> str:
    """Return DATABASE_URL, or start (or join) the embedded PostgreSQL under the data dir."""
    if settings.database_url:
        return settings.database_url
    _quiet_pgserver()
    import pgserver  # only needed in embedded mode

    pgdata = settings.data_dir / "pg"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so web, worker and scheduler (and
    # gunicorn, which replaces the CLI process by exec) share it; later runs join it again.
    # The data stays under ./.data/ between runs.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    return server.get_uri()


def connect(url: str, *, time_zone: str | None = None, **kwargs) -> psycopg.Connection:
    """Open one connection (CLI commands, tests); services use the pool."""
    return psycopg.connect(url, **{**connect_kwargs(url, time_zone=time_zone), **kwargs})


# Session settings of every pooled connection. random_page_cost 1.1 (the usual value for data
# in memory or on SSD, instead of 4 for spinning disks): with 4, the foreign-key check of every
# result inserted is planned as a sequential scan of the whole courses table (a few pages),
# once per result with the course row locked each time, more than a third of the insert's cost;
# with 1.1 it is a lookup in the primary key. Given as a connection option, so that it is the
# session's default (RESET keeps it) and applies before the first plan is made.
SESSION_OPTIONS = "-c random_page_cost=1.1"


def connect_kwargs(url: str, *, time_zone: str | None = None) -> dict:
    """Keyword arguments for psycopg.connect: dict rows and SESSION_OPTIONS (after the URL's)."""
    own = conninfo_to_dict(url).get("options")
    options = f"{own} {SESSION_OPTIONS}" if own else SESSION_OPTIONS
    if time_zone:
        # The organisation's day of the statuses in outgoing events (migration 0011, event_day;
        # docs/events.md, "The body"): TIME_ZONE, checked by config.load.
        options += f" -c competence_bridge.time_zone={time_zone}"
    return {"row_factory": dict_row, "options": options}


def use_app_role(conn: psycopg.Connection) -> None:
    """Run the rest of this session as the application's role (a pool's `configure`): not
    superuser, no BYPASSRLS, so that row-level security shows it only its tenant's rows."""
    conn.execute(q("session_use_app_role"))
    conn.commit()


def bind_tenant(conn: psycopg.Connection, tenant_id: int | None) -> None:
    """Give an idle connection its tenant, or none (docs/tenants.md, "Isolation").

    The setting is the session's, not a transaction's: a connection taken from the pool may
    commit several transactions, and each must see the same tenant. It is set outside any
    transaction (autocommit for the one statement), so that it opens none.
    """
    value = "" if tenant_id is None else str(int(tenant_id))
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute(q("session_bind_tenant"), {"tenant": value})
    finally:
        conn.autocommit = autocommit


def check_and_bind(conn: psycopg.Connection) -> None:
    """The pool's check of every checkout: the connection answers, and carries the tenant
    bound in the taking thread (to nothing when none is), so that no tenant outlives its holder.
    One round trip, as the check alone was."""
    bind_tenant(conn, tenancy.current())


def make_pool(url: str, *, min_size: int = 1, max_size: int = 4, name: str = "cb",
              time_zone: str | None = None) -> ConnectionPool:
    """Make this process's pool; call after fork and wait for it at boot."""
    return ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs=connect_kwargs(url, time_zone=time_zone),
        name=name,
        open=True,
        configure=use_app_role,
        check=check_and_bind,
    )


@contextmanager
def tenant_connection(url: str, tenant_id: int, **kwargs) -> Iterator[psycopg.Connection]:
    """One connection as the application role, bound to a tenant (commands acting in one)."""
    with connect(url, **kwargs) as conn:
        use_app_role(conn)
        bind_tenant(conn, tenant_id)
        yield conn


@cache
def queries() -> dict[str, str]:
    """Load every named block of the SQL files beside this module."""
    found: dict[str, str] = {}
    files = [p for root in SQL_ROOTS for p in root.rglob("*.sql") if "migrations" not in p.parts]
    for path in sorted(files):
        text = path.read_text()
        marks = list(_BLOCK.finditer(text))
        for i, mark in enumerate(marks):
            end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
            name = mark["name"]
            if name in found:
                raise RuntimeError(f"query {name!r} is defined twice ({path.name})")
            found[name] = text[mark.end():end].strip()
    # A line `-- include: NAME` stands for the named block's text (one level: a fragment that
    # two statements share, written once).
    def block(mark: re.Match) -> str:
        if mark["name"] not in found:
            raise RuntimeError(f"-- include: {mark['name']}: no block of that name")
        return found[mark["name"]]

    return {name: _INCLUDE.sub(block, text) for name, text in found.items()}


def q(name: str) -> str:
    """Return the named query."""
    return queries()[name]

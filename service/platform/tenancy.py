"""The tenant of the work at hand: one organisation of the deployment (docs/tenants.md).

Every database connection taken from a pool is given the tenant bound here when it is taken
(`service.platform.db`), and PostgreSQL's row-level security shows it only that tenant's rows.
Nothing bound means nothing seen: a query that forgot its tenant reads no rows and can write none.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

DEFAULT_SLUG = "default"
DEFAULT_ID = 1  # migration 0014 makes the tenant `default` with this id

_current: ContextVar[int | None] = ContextVar("competence_bridge_tenant", default=None)


def current() -> int | None:
    """Return the id of the bound tenant, or None."""
    return _current.get()


@contextmanager
def scope(tenant_id: int | None) -> Iterator[None]:
    """Bind a tenant for the span of a block (workers, the scheduler, commands)."""
    token = _current.set(tenant_id)
    try:
        yield
    finally:
        _current.reset(token)


def bind(tenant_id: int | None) -> None:
    """Bind a tenant for the rest of a request; `unbind` (a teardown) ends it."""
    _current.set(tenant_id)


def unbind(_exc: BaseException | None = None) -> None:
    """Forget the request's tenant, so that a thread's next request starts with none."""
    _current.set(None)


def of_message(body: dict) -> int:
    """The tenant a queued message names (`tenant`); messages queued before there were
    tenants are the `default` tenant's."""
    return int(body.get("tenant") or DEFAULT_ID)


# The slugs of the tenants this process has read (service.tenants.tenants.Directory), for the
# `tenant` label of metrics: bounded by the tenants there are.
_slugs: dict[int, str] = {DEFAULT_ID: DEFAULT_SLUG}


def remember(tenant_id: int, slug: str) -> None:
    _slugs[tenant_id] = slug


def label(tenant_id: int | None = None) -> str:
    """The metrics label of a tenant (the bound one by default): its slug, "-" for none."""
    tenant_id = current() if tenant_id is None else tenant_id
    if tenant_id is None:
        return "-"
    return _slugs.get(tenant_id, str(tenant_id))

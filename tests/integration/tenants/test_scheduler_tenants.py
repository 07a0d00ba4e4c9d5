"""The scheduler visits each active tenant on threads of its own, bound to it: a tenant whose
InfoCaption hangs holds up only itself (docs/tenants.md, "The scheduler")."""
from __future__ import annotations

import threading

import pytest

from service.platform import db, tenancy
from tests.conftest import wait_for
from tests.integration.tenants.conftest import SECOND
from workers.jobs import Job
from workers.scheduler import Scheduler

pytestmark = pytest.mark.integration


def test_a_hanging_tenant_holds_up_only_itself(conn, settings, database_url, second_tenant):
    conn.execute("INSERT INTO tenants (slug, name, active) VALUES ('closed', 'Closed', false)")
    release = threading.Event()
    runs: list[tuple[str, int | None]] = []
    seen_rows: dict[str, int] = {}

    def refresh(tenant):
        runs.append((tenant.slug, tenancy.current()))
        with scheduler.pool.connection() as c:  # bound to the tenant it runs for
            seen_rows[tenant.slug] = c.execute("SELECT count(*) AS n FROM competences").fetchone()["n"]
        if tenant.slug == SECOND:
            release.wait(60)  # its InfoCaption does not answer

    with db.tenant_connection(database_url, second_tenant.id) as c:
        c.execute("INSERT INTO competences (name, kind) VALUES ('B', 'main_group')")
    scheduler = Scheduler(settings, database_url,
                          jobs=[Job("catalog", 0.0, per_tenant=True, run=refresh)])
    try:
        scheduler.run_due(wait=False)
        wait_for(lambda: ("default", 1) in runs and (SECOND, second_tenant.id) in runs,
                 message="both tenants' rounds started")
        wait_for(lambda: scheduler._busy[1].done(), message="default's round ended")
        scheduler.run_due(wait=False)  # the next round: default again, the hanging one skipped
        wait_for(lambda: runs.count(("default", 1)) == 2, message="default's second round")
        assert runs.count((SECOND, second_tenant.id)) == 1
        assert all(slug != "closed" for slug, _ in runs)  # an inactive tenant is passed by
        assert seen_rows == {"default": 0, SECOND: 1}
        release.set()
        wait_for(lambda: not scheduler._busy[second_tenant.id].running(), message="B's round ended")
        scheduler.run_due(wait=True)
        assert runs.count((SECOND, second_tenant.id)) == 2
    finally:
        release.set()
        scheduler._tenant_threads.shutdown(wait=True)
        scheduler.pool.close()
        scheduler.publisher.close()

"""The `competence-bridge` command: the service's sub-commands and the workers' processes.

The service's commands (web, migrate, tokens, demo, status) are in service/cli.py; the
processes that consume queues and run periodic jobs, and a backfill in the foreground, are
added here, where the workers are: the service never imports the workers.
"""
from __future__ import annotations

import click

from service.cli import main
from service.platform.commands import database_url, serve_metrics
from service.platform.commands import settings as load_settings
from service.tenants.commands import tenant_id, tenant_option


@main.command()
@click.option("--queue", type=click.Choice(["events", "backfill", "deliveries", "all"]), default="all")
def worker(queue: str) -> None:
    """Consume queued events and commit their grants."""
    from workers.run import run_workers

    settings = load_settings()
    serve_metrics("worker")
    run_workers(settings, database_url(settings), queue)


@main.command()
def scheduler() -> None:
    """Reconcile linked courses and refresh the catalog; one active at a time."""
    from workers.scheduler import run_scheduler

    settings = load_settings()
    serve_metrics("scheduler")
    run_scheduler(settings, database_url(settings))


@main.command()
@click.option("--link", "link_id", type=int, required=True, help="The link's id.")
@click.option("--page-size", type=int, default=500, show_default=True,
              help="Results per API page (a resumed backfill keeps the size it started with).")
@tenant_option
def backfill(link_id: int, page_size: int, tenant: str):
    """Run or resume one link's backfill in the foreground, with a progress bar."""
    from tqdm import tqdm

    from service.platform import db, tenancy
    from service.infocaption.client import InfoCaptionClient
    from service.tenants import tenants
    from workers.backfill import Backfill

    settings = load_settings()
    url = database_url(settings)
    tid = tenant_id(url, tenant)
    with db.connect(url) as conn:
        found = tenants.by_id(conn, settings, tid)
    # Every connection of the pool is bound to the tenant (docs/tenants.md).
    tenancy.bind(tid)
    pool = db.make_pool(url, max_size=2, name="backfill-cli", time_zone=found.time_zone)
    pool.wait(timeout=30)
    client = InfoCaptionClient.for_tenant(found, settings)
    bar = tqdm(total=0, unit=" results", desc=f"link {link_id}")

    def progress(row: dict) -> None:
        bar.total = max(row.get("backfill_total") or 0, row.get("backfill_processed") or 0)
        bar.n = row.get("backfill_processed") or 0
        bar.set_postfix(granted=row.get("backfill_granted"),
                        already_held=row.get("backfill_already_held"),
                        not_passed=row.get("backfill_not_passed"),
                        unmatched=row.get("backfill_unmatched"), errors=row.get("backfill_errors"),
                        refresh=False)
        bar.refresh()

    try:
        row = Backfill(settings, pool, client, page_size=page_size, on_progress=progress).run(
            link_id, again=True)
    finally:
        bar.close()
        client.close()
        pool.close()
    if row is None:
        raise click.ClickException(f"no link with id {link_id}")
    click.echo(f"link {link_id}: backfill {row['backfill_state']}: total {row['backfill_total']}, "
               f"processed {row['backfill_processed']}, granted {row['backfill_granted']}, "
               f"already held {row['backfill_already_held']}, "
               f"not passed {row['backfill_not_passed']}, unmatched {row['backfill_unmatched']}, "
               f"errors {row['backfill_errors']}")
    if row["backfill_state"] != "done":
        raise click.ClickException(row.get("backfill_error") or "the backfill did not finish")


if __name__ == "__main__":
    main()

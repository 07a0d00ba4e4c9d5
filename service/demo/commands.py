"""CLI commands of the demo: `simulate` (the InfoCaption simulator) and `seed-demo`."""
from __future__ import annotations

import logging
import signal
from urllib.parse import urlparse

import click

from service.catalog.guides import is_course
from service.platform.commands import database_url as _database_url
from service.platform.commands import settings as _settings

log = logging.getLogger(__name__)

# The demo's competence tree and which of the simulator's courses grant what: (main group,
# group, competence, valid days or None, index of the simulator's course that grants it).
DEMO_TREE = (
    ("Vård och omsorg", "Akut och säkerhet", "HLR vuxen", 730, 0),
    ("Vård och omsorg", "Akut och säkerhet", "Akut omhändertagande", 1095, 0),
    ("Vård och omsorg", "Hygien", "Basala hygienrutiner", None, 1),
    ("Vård och omsorg", "Akut och säkerhet", "Brandskydd", 1095, 2),
)
SEED_MARK = "demo:seeded"
# The demo's console user, published on purpose like the demo's other secrets: only a
# database seeded by `seed-demo` (DEMO=1) has it (docs/console.md).
DEMO_CONSOLE_USER, DEMO_CONSOLE_PASSWORD = "admin", "demo-admin"  # the job_cursors row that says the demo was seeded (service/demo/demo.sql)


def _interrupt(*_args) -> None:
    raise KeyboardInterrupt  # SIGTERM (honcho, systemd) stops the simulator like Ctrl-C


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None,
              help="Default: the port of INFOCAPTION_BASE_URL (8001 in demo mode).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--courses", type=int, default=8, show_default=True,
              help="Courses (guide types 14 and 18; three guides of other types come too).")
@click.option("--results-per-course", type=int, default=300, show_default=True)
@click.option("--employees", type=int, default=150, show_default=True)
@click.option("--unmatched-share", type=float, default=0.15, show_default=True,
              help="Share of historical results whose email matches no employee.")
@click.option("--bad-records", type=int, default=0, show_default=True,
              help="Malformed records mixed into the results (the client skips them).")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False),
              help="Serve this JSON data set instead of generating one.")
@click.option("--dump", "dump_file", type=click.Path(dir_okay=False),
              help="Write the data set as JSON to this file and exit.")
@click.option("--webhook-url", default=None,
              help="Where to send webhooks. Default: this machine's web process on $PORT.")
@click.option("--rate", type=float, default=0.5, show_default=True,
              help="New results per second, each announced by a webhook (0: none).")
@click.option("--lose", type=float, default=0.0, show_default=True,
              help="Share of those webhooks 'lost' (reconciliation repairs them).")
@click.option("--token-ttl", type=int, default=3600, show_default=True)
@click.option("--concurrency", type=int, default=2, show_default=True,
              help="Webhooks in flight at once (raise it for high rates).")
def simulate(host, port, seed, courses, results_per_course, employees, unmatched_share,
             bad_records, data_file, dump_file, webhook_url, rate, lose, token_ttl, concurrency):
    """Run a local InfoCaption: its API, and signed webhooks to this service."""
    from service.demo.simulator import DataSet, Simulator, generate

    settings = _settings()
    if data_file:
        data = DataSet.load(data_file)
    else:
        data = generate(seed, courses=courses, results_per_course=results_per_course,
                        employees=employees, unmatched_share=unmatched_share,
                        bad_records=bad_records)
    if dump_file:
        data.dump(dump_file)
        click.echo(f"data set written to {dump_file}")
        return
    if port is None:
        base = urlparse(settings.infocaption_base_url)
        port = base.port if base.hostname in ("127.0.0.1", "localhost") and base.port else 8001
    webhook_url = webhook_url or f"http://127.0.0.1:{settings.port}/webhooks/infocaption"
    sim = Simulator(data, client_id=settings.infocaption_client_id,
                    client_secret=settings.infocaption_client_secret,
                    webhook_url=webhook_url, webhook_secret=settings.webhook_secrets[0],
                    token_ttl=token_ttl, sender_concurrency=concurrency)
    total = sum(len(v) for v in data.results.values())
    click.echo(f"InfoCaption simulator on http://{host}:{port}: {len(data.courses)} guides, "
               f"{total} results, {len(data.employees)} staff; webhooks to {webhook_url} "
               f"at {rate}/s (lost: {lose:.0%})")
    sim.start_traffic(rate, lose_share=lose, seed=seed)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sim.serve_forever(host, port)
    except KeyboardInterrupt:
        pass


@click.command("seed-demo")
@click.option("--seed", type=int, default=42, show_default=True, help="As given to `simulate`.")
@click.option("--courses", type=int, default=8, show_default=True, help="As given to `simulate`.")
@click.option("--employees", type=int, default=150, show_default=True, help="As given to `simulate`.")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False),
              help="The JSON data set given to `simulate --data` (instead of the seed).")
@click.option("--force", is_flag=True, help="Seed even outside demo mode (DEMO unset).")
def seed_demo(seed: int, courses: int, employees: int, data_file: str | None, force: bool):
    """Create demo competences, links and employees matching the simulator's data set, once."""
    from service.platform import db

    settings = _settings()
    if not settings.demo and not force:
        raise click.ClickException("seed-demo is for the demo (DEMO=1); use --force to seed anyway")
    with db.connect(_database_url(settings)) as conn:
        _demo_console_user(conn, settings.port)
        mark = conn.execute(db.q("demo_seed_mark"), {"name": SEED_MARK}).fetchone()
        if mark is not None:
            click.echo(f"demo seeded already ({mark['updated_at']:%Y-%m-%d %H:%M}): nothing added, "
                       "so that what an admin changed since stays as it is")
            return
        with conn.transaction():
            data = None
            if data_file:
                from service.demo.simulator import DataSet

                data = DataSet.load(data_file)
            summary = seed_demo_data(conn, seed=seed, courses=courses, employees=employees, data=data,
                                     tz=settings.time_zone)
    if summary.get("skipped"):
        click.echo(f"demo not seeded: {summary['skipped']}")
        return
    click.echo(f"demo seeded: {summary['employees']} new employee(s), "
               f"{summary['competences']} new competence node(s), {summary['links']} new link(s) "
               "(their backfills start once the scheduler and the worker run)")


def _demo_console_user(conn, port: int) -> None:
    """Make the demo's console user once (both permissions) and say how to sign in."""
    from service.access.tokens import PERMISSIONS
    from service.console import users

    with conn.transaction():
        users.ensure_user(conn, DEMO_CONSOLE_USER, DEMO_CONSOLE_PASSWORD, list(PERMISSIONS), actor="seed-demo")
    click.echo(f"console: http://localhost:{port}/login, user {DEMO_CONSOLE_USER!r}, "
               f"password {DEMO_CONSOLE_PASSWORD!r}")


def seed_demo_data(conn, *, seed: int = 42, courses: int = 8, employees: int = 150,
                   actor: str = "seed-demo", data=None, tz: str = "Europe/Stockholm") -> dict:
    """Insert the demo's employees, competence tree and links once; the caller commits.

    Everything goes through the admin API's domain functions (checks, audit rows); a link's
    backfill is an outbox row in the link's transaction, relayed to the queue by the
    scheduler. The seed marks the database (job_cursors, in the same transaction): a second
    seed adds nothing, so a link or an employee an admin deleted stays deleted.
    """
    from datetime import datetime, timezone

    from psycopg.types.json import Jsonb

    from service.platform import db
    from service.catalog import competences as catalog_competences
    from service.catalog import links as catalog_links
    from service.people import employees as people_employees
    from service.platform import errors
    from service.people.email import normalize_email
    from service.demo.simulator import generate_courses, generate_employees

    nothing = {"employees": 0, "competences": 0, "links": 0}
    marked = conn.execute(db.q("demo_take_seed_mark"), {
        "name": SEED_MARK, "cursor": Jsonb({"seed": seed, "courses": courses, "employees": employees,
                                             "data": data is not None})}).fetchone()
    if marked is None:
        return {**nothing, "skipped": "the database was seeded before"}
    if conn.execute(db.q("demo_holds_data")).fetchone()["holds"]:
        # Seeded before the mark existed, or set up by hand: either way not the demo's to change.
        return {**nothing, "skipped": "the database holds employees, competences or links already"}

    staff = data.employees if data is not None else generate_employees(seed, employees)
    taken = {r["email_normalized"] for r in conn.execute(
        db.q("admin_employees_by_emails"), {"emails": [normalize_email(e.email) for e in staff]})}
    new = {normalize_email(e.email): e for e in staff if normalize_email(e.email) not in taken}
    if new:
        people_employees.create_employees(conn, [{"email": e.email, "first_name": e.first_name,
                                       "last_name": e.last_name} for e in new.values()],
                               actor=actor, tz=tz)
    known = data.courses if data is not None else generate_courses(
        seed, courses, anchor=datetime.now(timezone.utc))
    catalog = sorted((c for c in known.values() if is_course(c.guide_type) and c.published and not c.deleted),
                     key=lambda c: c.id)
    nodes = 0

    def node(name, kind, parent_id, days=None):
        nonlocal nodes
        row = conn.execute(db.q("demo_find_competence"),
                           {"name": name, "kind": kind, "parent_id": parent_id}).fetchone()
        if row:
            return row["id"]
        nodes += 1
        return catalog_competences.create_competence(conn, {"parent_id": parent_id, "name": name, "kind": kind,
                                              "default_valid_days": days}, actor=actor)["id"]

    links = 0
    for main_name, group_name, competence_name, days, course_index in DEMO_TREE:
        main = node(main_name, "main_group", None)
        group = node(group_name, "group", main)
        competence = node(competence_name, "competence", group, days)
        if course_index >= len(catalog):
            continue
        course = catalog[course_index]
        conn.execute(db.q("demo_upsert_course"),
                     {"id": course.id, "name": course.name, "guide_type": course.guide_type})
        try:
            with conn.transaction():  # a savepoint: a refused link leaves the rest of the seed
                catalog_links.create_link(conn, course.id, competence, actor=actor)
        except errors.AdminError as exc:  # already linked (a second seed), or not linkable
            log.info("seed-demo: no new link for course %s: %s", course.id, exc)
            continue
        links += 1
    return {"employees": len(new), "competences": nodes, "links": links}

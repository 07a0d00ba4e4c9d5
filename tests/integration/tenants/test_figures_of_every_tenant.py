"""Every tenant's figures read in one statement each (docs/tenants.md, "Figures of every
tenant"): the gauges and the platform's views show each tenant its own counts, the statements
they run do not grow with the tenants, and the functions behind them answer no personal data."""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

from service.access import tokens
from service.platform import db, tenancy
from service.tenants import tenants
from tests.integration.api.conftest import (Api, add_course, add_employee, add_grant, add_link,
                                            add_tree)
from tests.integration.ops.metrics_util import scrape, value
from tests.integration.tenants.conftest import SECOND, SECOND_SECRET

pytestmark = pytest.mark.integration

THIRD, CLOSED = "kommun-c", "kommun-d"
NEWEST = 20  # the rows of each list /platform/ops shows (service/tenants/platform_api.py, LATEST)
PERSONAL = ("@", "anna", "payload-", "header-", "body-", "field-")
NUMBERS_AND_TIMES = ("integer", "bigint", "timestamp with time zone")
# The text columns the functions may answer: fixed words of the service, and of a rejected
# webhook the reason the service wrote (service/ingest/webhooks.py, _reject).
KINDS = ("status", "source", "queue", "state", "event_type", "error_kind", "reason")


def make_tenant(database_url, settings, slug: str, *, active: bool = True) -> int:
    with db.connect(database_url, autocommit=True) as owner:
        tenant_id = tenants.create(owner, settings, slug=slug, name=slug.title(),
                                   infocaption_base_url="http://127.0.0.1:9", client_id=slug,
                                   secrets={"client_secret": f"{slug}-secret",
                                            "webhook_secrets": [SECOND_SECRET]})
        if not active:
            tenants.set_active(owner, slug, False)
    return tenant_id


def seed(database_url, tenant_id: int, k: int, events_queue: str, *, rejected: int | None = None) -> dict:
    """k of each figure in one tenant (so that each tenant's differ), each row carrying an email
    where the table has one; returns the ids kept."""
    with db.tenant_connection(database_url, tenant_id, autocommit=True) as c:
        add_course(c, 4711)
        tree = add_tree(c)
        link = add_link(c, 4711, tree["leaf"])
        c.execute("UPDATE links SET backfill_state = 'running', backfill_total = %s,"
                  " backfill_processed = %s, backfill_granted = %s WHERE id = %s",
                  (10 * k, k, k, link))
        pending = add_link(c, 4711, add_tree(c)["leaf"])  # a second link, its backfill pending
        grant = None
        for i in range(k):
            employee = add_employee(c, f"anna{i}@kommun{k}.se")
            grant = add_grant(c, employee, tree["leaf"], result_id=f"r-{i}")
            c.execute("INSERT INTO results (id, course_id, email, email_normalized, passed,"
                      " completed_at, status, source, employee_id)"
                      " VALUES (%s, 4711, %s, %s, true, now(), 'granted', 'webhook', %s)",
                      (f"r-{i}", f"anna{i}@kommun{k}.se", f"anna{i}@kommun{k}.se", employee))
        for i in range(k + 1):  # k + 1 unmatched results of k distinct emails
            email = f"nobody{i % k}@kommun{k}.se"
            c.execute("INSERT INTO results (id, course_id, email, email_normalized, passed,"
                      " completed_at, status, source)"
                      " VALUES (%s, 4711, %s, %s, true, now(), 'unmatched', 'webhook')",
                      (f"u-{i}", email, email))
        letters = [c.execute(
            "INSERT INTO dead_letters (queue, event_type, payload, error) VALUES"
            " (%s, 'course.completed', %s, 'ValueError: anna@kommun.se') RETURNING id",
            (events_queue, json.dumps({"email": "anna@kommun.se", "x": "payload-"}))
        ).fetchone()["id"] for _ in range(k)]
        letters.append(c.execute(
            "INSERT INTO dead_letters (queue, event_type, payload, error, replayed_at) VALUES"
            " (%s, 'course.completed', '{}', 'KeyError: anna@kommun.se', now()) RETURNING id",
            (events_queue,)).fetchone()["id"])
        kept = [c.execute(
            "INSERT INTO rejected_webhooks (status, reason, webhook_id, errors, headers, body)"
            " VALUES (401, 'missing, malformed or wrong signature', 'msg-anna@kommun.se',"
            " %s, %s, %s) RETURNING id",
            (json.dumps({"field-": ["anna@kommun.se"]}), json.dumps({"header-": "anna@kommun.se"}),
             b"body- anna@kommun.se")).fetchone()["id"] for _ in range(k if rejected is None else rejected)]
        event = c.execute("INSERT INTO outgoing_events (type, grant_id, body) VALUES"
                          " ('grant.created', %s, '{\"email\": \"anna@kommun.se\"}') RETURNING id",
                          (grant,)).fetchone()["id"]
        for state in ["pending"] * k + ["failed", "delivered"]:
            c.execute("INSERT INTO event_deliveries (event_id, channel, grant_id, state, last_error)"
                      " VALUES (%s, 'mail', %s, %s, 'refused: anna@kommun.se')", (event, grant, state))
    return {"link": link, "pending_link": pending, "dead_letters": letters, "rejected": kept}


@pytest.fixture
def many(conn, settings, database_url, second_tenant):
    """Three active tenants (k = 1, 2, 3) and a closed one (k = 4), each with figures of its own;
    the third keeps more rejected webhooks than /platform/ops lists."""
    events = f"{settings.queue_prefix}.events"
    ids = {"default": tenancy.DEFAULT_ID, SECOND: second_tenant.id,
           THIRD: make_tenant(database_url, settings, THIRD),
           CLOSED: make_tenant(database_url, settings, CLOSED, active=False)}
    made = {}
    for k, (slug, tenant_id) in enumerate(ids.items(), start=1):
        made[slug] = {"id": tenant_id, "k": k, **seed(
            database_url, tenant_id, k, events, rejected=NEWEST + 5 if slug == THIRD else None)}
    return made


def test_the_gauges_show_each_active_tenants_own_counts(many, client, settings):
    events, backfill = (f"{settings.queue_prefix}.{kind}" for kind in ("events", "backfill"))
    seen = scrape(client)
    assert value(seen, "cb_dependency_up", dependency="database") == 1
    for slug in ("default", SECOND, THIRD):
        k, link = many[slug]["k"], many[slug]["link"]
        assert {s: value(seen, "cb_results", tenant=slug, status=s) for s in (
            "received", "granted", "failed", "unmatched", "no_link", "course_not_published")} == {
            "received": 0, "granted": k, "failed": 0, "unmatched": k + 1, "no_link": 0,
            "course_not_published": 0}, slug
        assert value(seen, "cb_grants", tenant=slug, source="webhook") == k
        assert value(seen, "cb_grants", tenant=slug, source="backfill") == 0
        assert value(seen, "cb_unmatched_results", tenant=slug) == k + 1
        assert value(seen, "cb_unmatched_emails", tenant=slug) == k
        assert value(seen, "cb_dead_letters_pending", tenant=slug, queue=events) == k
        assert value(seen, "cb_dead_letters_pending", tenant=slug, queue=backfill) == 0
        assert {s: value(seen, "cb_backfill_links", tenant=slug, state=s)
                for s in ("pending", "running", "done", "failed")} == {
            "pending": 1, "running": 1, "done": 0, "failed": 0}
        assert value(seen, "cb_event_deliveries", tenant=slug, state="pending") == k
        assert value(seen, "cb_event_deliveries", tenant=slug, state="failed") == 1
        labels = {"link_id": str(link), "course_id": "4711"}
        progress = {dict(lbl)["count"]: v for (name, lbl), v in seen.items()
                    if name == "cb_backfill_results" and dict(lbl)["tenant"] == slug
                    and dict(lbl).items() >= labels.items()}
        assert (progress["total"], progress["processed"], progress["granted"]) == (10 * k, k, k)
    # A closed tenant has no series; nobody else's link shows under a tenant's label.
    assert not [lbl for (_, lbl) in seen if dict(lbl).get("tenant") == CLOSED]
    links = {(dict(lbl)["tenant"], int(dict(lbl)["link_id"])) for (name, lbl) in seen
             if name == "cb_backfill_progress_ratio"}
    assert links == {(slug, many[slug][which]) for slug in ("default", SECOND, THIRD)
                     for which in ("link", "pending_link")}
    assert not any(word in name or any(word in v for v in dict(lbl).values())
                   for (name, lbl) in seen for word in ("@", "anna"))


def platform_api(app, database_url) -> Api:
    with db.connect(database_url, autocommit=True) as owner:
        return Api(app.test_client(), tokens.create(owner, "ops", [], platform=True))


def test_platform_ops_and_queues_show_each_tenants_own_figures_and_no_personal_data(
        many, app, database_url, settings):
    platform = platform_api(app, database_url)
    answer = platform.get("/api/v1/platform/ops")
    assert answer.status_code == 200
    text = answer.get_data(as_text=True)
    assert not [word for word in PERSONAL if word in text]
    seen = {t["tenant"]: t for t in answer.get_json()["tenants"]}
    assert list(seen) == ["default", SECOND, THIRD, CLOSED]  # every tenant, in order of id
    for slug, mine in many.items():
        t = seen[slug]
        assert t["dead_letters_pending"] == mine["k"], slug
        assert [d["id"] for d in t["dead_letters"]] == sorted(mine["dead_letters"], reverse=True)
        assert {d["error_kind"] for d in t["dead_letters"]} == {"ValueError", "KeyError"}
        assert set(t["dead_letters"][0]) == {"id", "queue", "event_type", "error_kind",
                                             "failed_at", "replayed_at"}
        assert t["rejected_webhooks_kept"] == len(mine["rejected"])
        # The newest of its own, at most NEWEST of each tenant whatever the others keep.
        assert [r["id"] for r in t["rejected_webhooks"]] == sorted(mine["rejected"], reverse=True)[:NEWEST]
        assert set(t["rejected_webhooks"][0]) == {"id", "received_at", "status", "reason"}
    assert len(seen[THIRD]["rejected_webhooks"]) == NEWEST

    queues = platform.get("/api/v1/platform/queues")
    assert queues.status_code == 200, queues.get_json()
    by_name = {q["name"]: q for q in queues.get_json()["queues"]}
    assert by_name[f"{settings.queue_prefix}.events"]["dead_letters"] == 1 + 2 + 3 + 4
    assert queues.get_json()["dead_letters"] == 1 + 2 + 3 + 4


def test_a_tenants_own_queue_view_counts_its_own_dead_letters_only(many, app, database_url, settings):
    with db.tenant_connection(database_url, many[SECOND]["id"], autocommit=True) as c:
        token = tokens.create(c, "ops", ["administer_competence_integrations"], actor="test")
    answer = Api(app.test_client(), token).get("/api/v1/ops/queues")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["dead_letters"] == many[SECOND]["k"]


# --- the statements do not grow with the tenants ----------------------------------------


@contextmanager
def statements_of_this_thread():
    """Count the statements this thread sends to PostgreSQL (every psycopg cursor's execute,
    the pool's check of each checkout included); other threads' are not counted."""
    sent = []
    me = threading.get_ident()
    original = psycopg.Cursor.execute

    def counting(self, query, *args, **kwargs):
        if threading.get_ident() == me:
            sent.append(query)
        return original(self, query, *args, **kwargs)

    psycopg.Cursor.execute = counting
    try:
        yield sent
    finally:
        psycopg.Cursor.execute = original


def test_the_statements_of_a_scrape_and_of_the_platform_views_do_not_grow_with_the_tenants(
        conn, app, settings, database_url):
    events = f"{settings.queue_prefix}.events"
    client = app.test_client()
    platform = platform_api(app, database_url)

    def count() -> dict[str, int]:
        counted = {}
        for name, call in (("scrape", lambda: scrape(client)),
                           ("ops", lambda: platform.get("/api/v1/platform/ops")),
                           ("queues", lambda: platform.get("/api/v1/platform/queues"))):
            call()  # once before: a first request may read what later ones keep
            with statements_of_this_thread() as sent:
                call()
            counted[name] = len(sent)
        return counted

    seed(database_url, tenancy.DEFAULT_ID, 1, events)
    one = count()
    assert all(n > 0 for n in one.values()), one  # the counting sees the statements
    for k in range(2, 7):
        seed(database_url, make_tenant(database_url, settings, f"kommun-{k}"), k, events)
    six = count()
    assert six == one
    assert value(scrape(client), "cb_results", tenant="kommun-6", status="granted") == 6


# --- the functions answer no personal data --------------------------------------------------


def test_the_functions_answer_the_app_role_counts_and_ids_only(many, database_url):
    with db.connect(database_url, autocommit=True) as owner:
        functions = owner.execute(
            "SELECT p.oid::regprocedure::text AS signature, p.proname, p.prosecdef, p.proconfig,"
            " pg_get_function_result(p.oid) AS answers, p.pronargs,"
            " has_function_privilege('public', p.oid, 'EXECUTE') AS public_may,"
            " has_function_privilege('competence_bridge_app', p.oid, 'EXECUTE') AS app_may"
            " FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
            " AND p.proname LIKE 'state\\_%' ORDER BY p.proname").fetchall()
    assert {f["proname"] for f in functions} == {
        "state_results_by_status", "state_grants_by_source", "state_unmatched",
        "state_dead_letters_pending", "state_backfill_links_by_state",
        "state_backfills_unfinished", "state_event_deliveries", "state_rejected_webhooks_kept",
        "state_latest_dead_letters", "state_latest_rejected_webhooks"}
    for f in functions:
        assert f["prosecdef"], f["signature"]
        assert "search_path=public, pg_temp" in (f["proconfig"] or []), f["signature"]
        assert not f["public_may"] and f["app_may"], f["signature"]
        # Numbers and times, and text only of the words that name a kind (never free text
        # a person or a sender wrote).
        assert f["answers"].startswith("TABLE(") and f["answers"].endswith(")"), f["answers"]
        for column in f["answers"][len("TABLE("):-1].split(", "):
            name, kind = column.split(" ", 1)
            assert kind in NUMBERS_AND_TIMES or (kind == "text" and name in KINDS), (
                f["signature"], column)

    every = [t["id"] for t in many.values()]
    answered = []
    with db.tenant_connection(database_url, many[SECOND]["id"], autocommit=True) as app_role:
        assert app_role.execute("SELECT current_user AS u").fetchone()["u"] == "competence_bridge_app"
        for f in functions:
            args = (every,) if f["pronargs"] == 1 else (every, 1000)
            call = sql.SQL("SELECT * FROM {}({})").format(
                sql.Identifier(f["proname"]),
                sql.SQL(", ").join([sql.SQL("%s::integer[]")] + [sql.SQL("%s")] * (len(args) - 1)))
            rows = app_role.execute(call, args).fetchall()
            assert rows, f["proname"]  # every tenant has figures of each kind
            assert {r["tenant_id"] for r in rows} <= set(every)
            answered.append(json.dumps(rows, default=str))
        # What the tenant's own policy hides stays hidden: the tables answer its rows only.
        assert {r["tenant_id"] for r in app_role.execute("SELECT tenant_id FROM dead_letters")} == {
            many[SECOND]["id"]}
    text = "\n".join(answered)
    assert not [word for word in PERSONAL if word in text]
    # A role of the cluster that is not the application's may not run them at all.
    with db.connect(database_url, autocommit=True) as owner:
        owner.execute("DROP ROLE IF EXISTS cb_test_outsider")
        owner.execute("CREATE ROLE cb_test_outsider NOLOGIN")
        try:
            owner.execute("GRANT USAGE ON SCHEMA public TO cb_test_outsider")
            owner.execute("SET ROLE cb_test_outsider")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                owner.execute("SELECT * FROM state_unmatched(%s::integer[])", (every,))
            owner.execute("RESET ROLE")
        finally:
            owner.execute("RESET ROLE")
            owner.execute("REVOKE USAGE ON SCHEMA public FROM cb_test_outsider")
            owner.execute("DROP ROLE cb_test_outsider")


def test_status_shows_every_tenant_together_read_through_the_same_functions(many, database_url,
                                                                            settings):
    from service.ops.state import database_state

    events = f"{settings.queue_prefix}.events"
    ks = [t["k"] for t in many.values()]  # 1, 2, 3 and the closed tenant's 4
    with db.connect(database_url) as owner:  # as `competence-bridge status` reads
        state = database_state(owner)
    assert state.results["granted"] == sum(ks)
    assert state.results["unmatched"] == sum(k + 1 for k in ks)
    assert (state.unmatched_results, state.unmatched_emails) == (sum(k + 1 for k in ks), sum(ks))
    assert state.grants["webhook"] == sum(ks)
    assert state.dead_letters_pending == {events: sum(ks)}
    assert state.backfill_links == {"pending": 4, "running": 4, "done": 0, "failed": 0}
    assert state.event_deliveries == {"pending": sum(ks), "failed": 4}
    assert [b["id"] for b in state.backfills] == sorted(
        link for t in many.values() for link in (t["link"], t["pending_link"]))
    assert "tenant_id" not in state.backfills[0]

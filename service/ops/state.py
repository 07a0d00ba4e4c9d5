"""What ops watch, read at scrape time and by `competence-bridge status`: queues, results,
grants, unmatched, dead letters and backfills (service/ops/state.sql)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily

from service.ops import dead_letters as ops_dead_letters
from service.platform import db, messaging, tenancy
from service.platform.messaging import QueueStat

log = logging.getLogger(__name__)

RESULT_STATUSES = ("received", "granted", "failed", "unmatched", "no_link", "course_not_published")
BACKFILL_STATES = ("pending", "running", "done", "failed")
GRANT_SOURCES = ("webhook", "backfill", "reconciliation", "employee_update", "manual")
DELIVERY_STATES = ("pending", "failed")  # of outgoing events: waiting, and failed for good
# docs/admin-api.md, "Links": processed = granted + already_held + not_passed + unmatched + errors.
BACKFILL_COUNTS = ("total", "processed", "granted", "already_held", "not_passed", "unmatched",
                   "errors")
# Per-link series only for links whose backfill is not done, at most this many (cardinality).
BACKFILL_SERIES_LIMIT = 500
STATE_TIMEOUT_S = 2.0



# --- reading the state ----------------------------------------------------------------------


def queue_stats(settings, database_url: str, timeout_s: float = STATE_TIMEOUT_S) -> list[QueueStat]:
    """Every queue's depth and consumers (messaging.queue_stats), within the timeout."""
    return messaging.queue_stats(settings, database_url, timeout_s)


@dataclass
class DatabaseState:
    results: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULT_STATUSES, 0))
    grants: dict[str, int] = field(default_factory=lambda: dict.fromkeys(GRANT_SOURCES, 0))
    unmatched_results: int = 0
    unmatched_emails: int = 0
    dead_letters_pending: dict[str, int] = field(default_factory=dict)
    backfill_links: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BACKFILL_STATES, 0))
    backfills: list[dict] = field(default_factory=list)
    event_deliveries: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DELIVERY_STATES, 0))


def database_states(conn, tenant_ids: list[int], *, timeout_s: float = STATE_TIMEOUT_S,
                    backfill_limit: int = BACKFILL_SERIES_LIMIT) -> dict[int, DatabaseState]:
    """Read the counts ops watch of the tenants named, by tenant, in the caller's transaction:
    one statement per count however many tenants there are (docs/tenants.md, "Figures of
    every tenant"), each time-limited."""
    conn.execute(db.q("obs_statement_timeout"), {"timeout": f"{int(timeout_s * 1000)}ms"})
    states = {tenant_id: DatabaseState() for tenant_id in tenant_ids}
    if not states:
        return states
    named = {"tenants": list(states)}
    for row in conn.execute(db.q("obs_results_by_status"), named):
        states[row["tenant_id"]].results[row["status"]] = row["n"]
    for row in conn.execute(db.q("obs_grants_by_source"), named):
        states[row["tenant_id"]].grants[row["source"]] = row["n"]
    for row in conn.execute(db.q("obs_unmatched"), named):
        state = states[row["tenant_id"]]
        state.unmatched_results, state.unmatched_emails = row["results"], row["emails"]
    for tenant_id, pending in ops_dead_letters.pending_by_tenant(conn, list(states)).items():
        states[tenant_id].dead_letters_pending = pending
    for row in conn.execute(db.q("obs_backfill_links_by_state"), named):
        states[row["tenant_id"]].backfill_links[row["state"]] = row["n"]
    for row in conn.execute(db.q("obs_backfills_unfinished"), {**named, "limit": backfill_limit}):
        states[row.pop("tenant_id")].backfills.append(row)
    for row in conn.execute(db.q("obs_event_deliveries"), named):
        states[row["tenant_id"]].event_deliveries[row["state"]] = row["n"]
    return states


def database_state(conn, *, timeout_s: float = STATE_TIMEOUT_S,
                   backfill_limit: int = BACKFILL_SERIES_LIMIT) -> DatabaseState:
    """The counts ops watch of every tenant together (`competence-bridge status`), read as
    database_states reads them."""
    ids = [r["id"] for r in conn.execute(db.q("tenant_ids"))]
    together = DatabaseState()
    for state in database_states(conn, ids, timeout_s=timeout_s,
                                 backfill_limit=backfill_limit).values():
        for mine, theirs in ((together.results, state.results), (together.grants, state.grants),
                             (together.dead_letters_pending, state.dead_letters_pending),
                             (together.backfill_links, state.backfill_links),
                             (together.event_deliveries, state.event_deliveries)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        together.unmatched_results += state.unmatched_results
        together.unmatched_emails += state.unmatched_emails
        together.backfills.extend(state.backfills)
    together.backfills = sorted(together.backfills, key=lambda b: b["id"])[:backfill_limit]
    return together


# --- the scrape-time collector --------------------------------------------------------------


class StateCollector:
    """Gauges read from RabbitMQ and PostgreSQL when Prometheus scrapes the web process.

    A dependency that cannot be read within the timeout shows as `cb_dependency_up 0` and its
    gauges are left out of that scrape; the scrape itself still succeeds.
    """

    def __init__(self, settings, pool, timeout_s: float = STATE_TIMEOUT_S):
        self.settings = settings
        self.pool = pool
        self.timeout_s = timeout_s

    def describe(self):
        return []  # registering must not query the database

    def collect(self):
        up = GaugeMetricFamily("cb_dependency_up", "Whether the web process could read the "
                               "dependency at this scrape (1) or not (0)", labels=["dependency"])
        started = time.monotonic()
        try:
            stats = queue_stats(self.settings, self.pool.conninfo, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure means "broker not readable now"
            log.warning("metrics: broker unreachable (%s)", exc.__class__.__name__)
            stats = None
        up.add_metric(["broker"], 0 if stats is None else 1)
        try:
            state = self._tenant_states()
        except Exception as exc:  # noqa: BLE001 - any failure means "database not readable now"
            log.warning("metrics: database unreachable (%s)", exc.__class__.__name__)
            state = None
        up.add_metric(["database"], 0 if state is None else 1)
        yield up

        if stats is not None:
            depth = GaugeMetricFamily("cb_queue_messages", "Messages ready in the queue",
                                      labels=["queue"])
            consumers = GaugeMetricFamily("cb_queue_consumers", "Consumers of the queue",
                                          labels=["queue"])
            for s in stats:
                depth.add_metric([s.name], s.depth)
                consumers.add_metric([s.name], s.consumers)
            yield depth
            yield consumers

        if state is not None:
            yield from self._database_families(state, messaging.topology(self.settings))
        duration = GaugeMetricFamily("cb_state_scrape_duration_seconds",
                                     "Time spent reading the state gauges")
        duration.add_metric([], time.monotonic() - started)
        yield duration

    def _tenant_states(self) -> dict[str, DatabaseState]:
        """Each active tenant's state (the `tenant` label of the gauges: one series per
        tenant), read in a fixed number of statements however many tenants there are."""
        with tenancy.scope(None), self.pool.connection(timeout=self.timeout_s) as conn:
            every = [(r["id"], r["slug"]) for r in conn.execute(db.q("obs_active_tenants"))]
            states = database_states(conn, [tenant_id for tenant_id, _ in every],
                                     timeout_s=self.timeout_s)
        return {slug: states[tenant_id] for tenant_id, slug in every}

    def _database_families(self, states: dict[str, DatabaseState], topo):
        def by_label(name, documentation, label, values_of):
            family = GaugeMetricFamily(name, documentation, labels=["tenant", label])
            for tenant, state in states.items():
                for value, n in sorted(values_of(state).items()):
                    family.add_metric([tenant, value], n)
            return family

        def one(name, documentation, value_of):
            family = GaugeMetricFamily(name, documentation, labels=["tenant"])
            for tenant, state in states.items():
                family.add_metric([tenant], value_of(state))
            return family

        yield by_label("cb_results", "Stored results, by status", "status", lambda s: s.results)
        yield by_label("cb_grants", "Current grants, by source", "source", lambda s: s.grants)
        yield one("cb_unmatched_results", "Kept results that match no employee (the unmatched report)",
                  lambda s: s.unmatched_results)
        yield one("cb_unmatched_emails", "Distinct emails of the unmatched results",
                  lambda s: s.unmatched_emails)
        queues = {topo.queue(kind).name: 0 for kind in ("events", "backfill")}
        yield by_label("cb_dead_letters_pending", "Dead-lettered events not replayed yet", "queue",
                       lambda s: {**queues, **s.dead_letters_pending})
        yield by_label("cb_backfill_links", "Links, by backfill state", "state", lambda s: s.backfill_links)
        yield by_label("cb_event_deliveries", "Outgoing event deliveries waiting (pending) and failed "
                       "for good (failed; re-sendable from the delivery log)", "state",
                       lambda s: s.event_deliveries)

        labels = ["tenant", "link_id", "course_id", "competence_id"]
        counts = GaugeMetricFamily(
            "cb_backfill_results", "Backfill progress of each link not done: results expected "
            "(total), processed (the sum of the rest), granted (grants created), already_held, "
            "not_passed, unmatched and errors (records unreadable or refused)",
            labels=labels + ["count"])
        ratio = GaugeMetricFamily("cb_backfill_progress_ratio",
                                  "Processed / total of each link not done (0 until counted)",
                                  labels=labels)
        for tenant, state in states.items():
            for b in state.backfills:
                key = [tenant, str(b["id"]), str(b["course_id"]), str(b["competence_id"])]
                for name in BACKFILL_COUNTS:
                    counts.add_metric(key + [name], b[name])
                ratio.add_metric(key, (b["processed"] / b["total"]) if b["total"] else 0.0)
        yield counts
        yield ratio

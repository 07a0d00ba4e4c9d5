-- What ops watch: the state behind the Prometheus gauges of the web process and behind
-- `competence-bridge status`. Read-only; every block is cheap or bounded by a LIMIT.
-- The counts are of the tenants named (`tenants`, an array of ids), by tenant: each one
-- statement whatever the number of tenants, through the functions of migration 0016 (counts
-- and ids only; docs/tenants.md, "Figures of every tenant").

-- name: obs_statement_timeout
-- Bound the statements of one scrape (this transaction only), e.g. '2000ms'.
SELECT set_config('statement_timeout', %(timeout)s, true);

-- name: obs_results_by_status
SELECT tenant_id, status, n FROM state_results_by_status(%(tenants)s::integer[]);

-- name: obs_grants_by_source
-- Grants not revoked (a revoked grant stays as a row of history: docs/rules.md, rule 5).
SELECT tenant_id, source, n FROM state_grants_by_source(%(tenants)s::integer[]);

-- name: obs_unmatched
-- Served by the partial index results_unmatched_idx.
SELECT tenant_id, results, emails FROM state_unmatched(%(tenants)s::integer[]);

-- name: obs_backfill_links_by_state
SELECT tenant_id, state, n FROM state_backfill_links_by_state(%(tenants)s::integer[]);

-- name: obs_backfills_unfinished
-- Links whose backfill is not done, oldest first, at most `limit` of each tenant: one series
-- (or one progress bar) each.
SELECT tenant_id, id, course_id, competence_id, state, total, processed, granted, already_held,
       not_passed, unmatched, errors, started_at
  FROM state_backfills_unfinished(%(tenants)s::integer[], %(limit)s);

-- name: obs_recent_grants
SELECT g.id, g.employee_id, e.email, g.competence_id, c.name AS competence, g.course_id,
       g.source, g.valid_from, g.valid_to, g.created_at
FROM grants g
JOIN employees e ON e.id = g.employee_id
JOIN competences c ON c.id = g.competence_id
ORDER BY g.created_at DESC, g.id DESC
LIMIT %(limit)s;

-- name: obs_event_deliveries
-- Outgoing event deliveries waiting and failed for good (docs/events.md, "Delivery"); both
-- read through partial indexes, never the delivered history.
SELECT tenant_id, state, n FROM state_event_deliveries(%(tenants)s::integer[]);

-- name: obs_active_tenants
-- The tenants whose state the gauges show (migration 0014), each under its own label.
SELECT id, slug FROM tenants WHERE active ORDER BY id;

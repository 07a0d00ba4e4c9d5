-- What ops watch: the state behind the Prometheus gauges of the web process and behind
-- `competence-bridge status`. Read-only; every block is cheap or bounded by a LIMIT.

-- name: obs_statement_timeout
-- Bound the statements of one scrape (this transaction only), e.g. '2000ms'.
SELECT set_config('statement_timeout', %(timeout)s, true);

-- name: obs_results_by_status
SELECT status, count(*) AS n
FROM results
GROUP BY status;

-- name: obs_grants_by_source
-- Grants not revoked (a revoked grant stays as a row of history: docs/rules.md, rule 5).
SELECT source, count(*) AS n
FROM grants
WHERE revoked_at IS NULL
GROUP BY source;

-- name: obs_unmatched
-- Served by the partial index results_unmatched_idx.
SELECT count(*) AS results, count(DISTINCT email_normalized) AS emails
FROM results
WHERE status = 'unmatched';

-- name: obs_dead_letters_pending
SELECT queue, count(*) AS n
FROM dead_letters
WHERE replayed_at IS NULL
GROUP BY queue;

-- name: obs_backfill_links_by_state
SELECT backfill_state AS state, count(*) AS n
FROM links
GROUP BY backfill_state;

-- name: obs_backfills_unfinished
-- Links whose backfill is not done, oldest first: one series (or one progress bar) each.
SELECT id, course_id, competence_id, backfill_state AS state,
       backfill_total AS total, backfill_processed AS processed,
       backfill_granted AS granted, backfill_already_held AS already_held,
       backfill_not_passed AS not_passed, backfill_unmatched AS unmatched,
       backfill_errors AS errors, backfill_started_at AS started_at
FROM links
WHERE backfill_state <> 'done'
ORDER BY id
LIMIT %(limit)s;

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
SELECT 'pending' AS state, count(*) AS n FROM event_deliveries WHERE state = 'pending'
UNION ALL
SELECT 'failed', count(*) FROM event_deliveries WHERE state = 'failed';

-- name: obs_active_tenants
-- The tenants whose state the gauges show (migration 0014), each under its own label.
SELECT id, slug FROM tenants WHERE active ORDER BY id;

-- Queries of the benchmark only (bench/); never loaded by the service.

-- name: seed_competences
-- One main group, one group, and %(linked)s + %(unlinked)s competences under it
-- (ids 3 ..): the first ones are linked to the courses, the rest carry growth grants.
INSERT INTO competences (id, parent_id, name, kind, default_valid_days)
SELECT * FROM (VALUES (1::bigint, NULL::bigint, 'Bench', 'main_group', NULL::int),
                      (2, 1, 'Bench group', 'group', NULL)) AS top
UNION ALL
SELECT 2 + g, 2, 'Competence ' || g, 'competence', CASE WHEN g %% 2 = 0 THEN 365 END
  FROM generate_series(1, %(linked)s + %(unlinked)s) AS g;

-- name: seed_competence_sequence
SELECT setval('competences_id_seq', (SELECT max(id) FROM competences));

-- name: seed_courses
-- Published courses %(first_course)s .. + %(courses)s - 1.
INSERT INTO courses (id, name, guide_type, status)
SELECT %(first_course)s + g, 'Course ' || g, 14, 'published'
  FROM generate_series(0, %(courses)s - 1) AS g;

-- name: seed_links
-- Course number g grants competences 3 + 2g and 4 + 2g.
INSERT INTO links (course_id, competence_id, created_by, backfill_state)
SELECT %(first_course)s + g, 3 + %(per_course)s * g + k, 'bench', 'done'
  FROM generate_series(0, %(courses)s - 1) AS g, generate_series(0, %(per_course)s - 1) AS k;

-- name: seed_employees
-- Employees 0 .. %(employees)s - 1, stored in lower case (the webhooks use mixed case).
INSERT INTO employees (email, email_normalized, first_name, last_name)
SELECT 'employee' || g || '@bench.example', 'employee' || g || '@bench.example', 'Bench', 'E' || g
  FROM generate_series(0, %(employees)s - 1) AS g;

-- name: growth_drop_grant_indexes
-- Growth: build the 10 M grants without indexes and foreign-key triggers, then index them
-- (set-based; the data is valid by construction). Bench database only. The foreign key of
-- grant_notices (migration 0011) rests on grants_pkey: it goes first and comes back last.
ALTER TABLE grant_notices DROP CONSTRAINT grant_notices_grant_id_fkey;
ALTER TABLE grants DROP CONSTRAINT grants_periods_excl,
                   DROP CONSTRAINT grants_pkey;
DROP INDEX grants_employee_competence_idx;

-- name: growth_drop_competence_index
DROP INDEX grants_competence_id_idx;

-- name: growth_insert_grants
-- Every employee holds every unlinked competence: employees x unlinked = the growth grants.
INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source, course_id,
                    result_id, link_id, created_at, updated_at)
SELECT e.id, c.id, date '2024-01-01' + (e.id % 365)::int, NULL, 'backfill', NULL,
       'g-' || e.id || '-' || c.id, NULL, now(), now()
  FROM employees e
 CROSS JOIN (SELECT id FROM competences
              WHERE kind = 'competence'
                AND id NOT IN (SELECT competence_id FROM links)) AS c;

-- name: growth_restore_grant_indexes
-- (the constraint and index of migration 0009, service/platform/migrations)
ALTER TABLE grants ADD CONSTRAINT grants_pkey PRIMARY KEY (id),
                   ADD CONSTRAINT grants_periods_excl
                       EXCLUDE USING gist (grant_extent(employee_id, competence_id, valid_from,
                                                        valid_to) WITH &&)
                       WHERE (revoked_at IS NULL);
CREATE INDEX grants_employee_competence_idx ON grants (employee_id, competence_id, valid_from);
ALTER TABLE grant_notices ADD CONSTRAINT grant_notices_grant_id_fkey
    FOREIGN KEY (grant_id) REFERENCES grants (id) ON DELETE CASCADE;

-- name: growth_restore_competence_index
-- As migration 0010 makes it.
CREATE INDEX grants_competence_id_idx ON grants (competence_id, valid_to, id);

-- name: count_grants
SELECT count(*) AS n FROM grants;

-- name: run_outcome
-- What a worker run left: events taken, results by status, grants.
SELECT (SELECT count(*) FROM webhook_receipts) AS receipts,
       (SELECT count(*) FROM results) AS results,
       (SELECT count(*) FROM results WHERE status = 'granted') AS granted,
       (SELECT count(*) FROM results WHERE status = 'failed') AS failed,
       (SELECT count(*) FROM grants WHERE result_id IS NULL OR result_id NOT LIKE 'g-%') AS grants,
       (SELECT count(*) FROM dead_letters) AS dead_letters;

-- name: receipts_done
SELECT count(*) AS n FROM webhook_receipts;

-- name: receipt_window
-- Events committed in transactions that began before the last one, and the time between the
-- first and the last transaction's start (now() in a transaction is its start time).
SELECT count(*) FILTER (WHERE processed_at < last) AS events,
       extract(epoch FROM last - first) AS seconds,
       count(*) AS total,
       count(DISTINCT processed_at) AS transactions
  FROM webhook_receipts,
       (SELECT min(processed_at) AS first, max(processed_at) AS last FROM webhook_receipts) AS w
 GROUP BY first, last;

-- name: latency_trigger_function
-- Latency: tell a listener when the grants of a webhook are committed (bench database only).
CREATE FUNCTION bench_notify_grants() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_grants', n.webhook_id)
       FROM (SELECT DISTINCT webhook_id FROM new_grants WHERE webhook_id IS NOT NULL) AS n;
    RETURN NULL;
END $$;

-- name: latency_trigger
CREATE TRIGGER bench_notify_grants AFTER INSERT ON grants
REFERENCING NEW TABLE AS new_grants FOR EACH STATEMENT EXECUTE FUNCTION bench_notify_grants();

-- name: latency_listen
LISTEN bench_grants;

-- name: backfill_setup_course
-- Backfill: the course with the long history, and a link of it to a competence no other
-- course grants (so every grant the backfill creates is counted).
INSERT INTO courses (id, name, guide_type, status) VALUES (%(course_id)s, %(name)s, 14, 'published');

-- name: backfill_setup_link
INSERT INTO links (course_id, competence_id, created_by)
VALUES (%(course_id)s, (SELECT max(id) FROM competences WHERE kind = 'competence'), 'bench')
RETURNING id;

-- name: backfill_outcome
SELECT backfill_state, backfill_total, backfill_processed, backfill_granted, backfill_already_held,
       backfill_not_passed, backfill_unmatched, backfill_errors,
       (SELECT count(*) FROM grants WHERE link_id = %(link_id)s) AS grants
  FROM links WHERE id = %(link_id)s;

-- name: server_counters
-- WAL written and checkpoints so far (server-wide: other clients' work shows too).
SELECT pg_current_wal_lsn() AS lsn,
       (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) AS checkpoints,
       (SELECT buffers_backend FROM pg_stat_bgwriter) AS backend_writes;

-- name: wal_bytes
SELECT pg_wal_lsn_diff(%(after)s::pg_lsn, %(before)s::pg_lsn) AS bytes;

-- name: backfill_result_foreign_keys
SELECT conname FROM pg_constraint WHERE conrelid = 'results'::regclass AND contype = 'f' ORDER BY conname;

-- name: reports_drop_grant_indexes
-- Reports (part 6): built without the indexes and constraints of grants but its primary key
-- (the expiry notices' foreign key needs it), and without triggers, then indexed again as the
-- migrations made them. Bench database only.
ALTER TABLE grants DROP CONSTRAINT grants_periods_excl;

-- name: reports_drop_other_indexes
DROP INDEX grants_competence_id_idx, grants_expiring_idx, grants_employee_competence_idx,
           grants_valid_to_idx, grants_updated_at_idx;

-- name: reports_insert_grants
-- Every employee holds %(competences)s competences (365 or 730 days valid) as two periods:
-- the one before and the current one, started on a day spread over the last two validities (so
-- some current ones have expired, not renewed). Every 10th pair renewed early: its second
-- grant starts the day after the first (active) ends, upcoming. Every 100th second grant is revoked
-- (kept as a row with revoked_at, as periods keep them).
INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source, course_id,
                    result_id, link_id, created_at, updated_at, revoked_at, revoked_reason,
                    revoked_by)
SELECT p.employee_id, p.competence_id, s.valid_from, s.valid_from + p.days, 'backfill', NULL,
       'p-' || p.employee_id || '-' || p.competence_id || '-' || s.k, NULL, now(), now(),
       CASE WHEN s.k = 1 AND p.h %% 100 = 7 THEN now() END,
       CASE WHEN s.k = 1 AND p.h %% 100 = 7 THEN 'bench' END,
       CASE WHEN s.k = 1 AND p.h %% 100 = 7 THEN 'bench' END
  FROM (SELECT e.id AS employee_id, c.id AS competence_id, c.days,
               abs(hashint8(e.id * 1000 + c.id)) AS h
          FROM employees e
         CROSS JOIN (SELECT id, CASE WHEN id %% 2 = 0 THEN 365 ELSE 730 END AS days
                       FROM competences WHERE kind = 'competence'
                      ORDER BY id LIMIT %(competences)s) c) p
 CROSS JOIN LATERAL (
        SELECT k, CASE WHEN p.h %% 10 = 0
                       -- renewed early: the current grant, then the next one from the day after
                       THEN %(today)s::date - (p.h %% (p.days - 30))::int + k * (p.days + 1)
                       ELSE %(today)s::date - (p.h %% (2 * p.days))::int
                            - (1 - k) * (p.days + 1 + (p.h %% 200)::int) END AS valid_from
          FROM generate_series(0, 1) AS k) s;

-- name: reports_restore_pair_index
-- The periods of an employee and competence, and the rule that they never overlap (0009).
CREATE INDEX grants_employee_competence_idx ON grants (employee_id, competence_id, valid_from);
ALTER TABLE grants ADD CONSTRAINT grants_periods_excl
    EXCLUDE USING gist (grant_extent(employee_id, competence_id, valid_from, valid_to) WITH &&)
    WHERE (revoked_at IS NULL);

-- name: reports_restore_competence_index
CREATE INDEX grants_competence_id_idx ON grants (competence_id, valid_to, id);

-- name: reports_restore_expiring_index
CREATE INDEX grants_expiring_idx ON grants (valid_to, id) WHERE revoked_at IS NULL AND valid_to IS NOT NULL;
CREATE INDEX grants_valid_to_idx ON grants (valid_to) WHERE valid_to IS NOT NULL AND revoked_at IS NULL;
CREATE INDEX grants_updated_at_idx ON grants (updated_at);

-- name: reports_rebuild_summaries
-- The coverage summaries from the grants (the triggers were off), folded as the scheduler does.
SELECT coverage_rebuild(), coverage_compact(%(cutoff)s);

-- name: reports_summary_rows
SELECT (SELECT count(*) FROM coverage_active_edges) AS active_edges,
       (SELECT count(*) FROM coverage_latest_grants) AS latest_grants,
       (SELECT count(*) FROM grants) AS grants,
       (SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL) AS revoked;

-- name: fairness_tenant_competences
-- Fairness (part 7): tenant B's own tree, made on a session whose app.tenant_id is B's (every
-- row's tenant_id defaults to it): a main group, a group and %(linked)s competences, their ids
-- from the sequence (competence ids are unique across tenants).
WITH top AS (
    INSERT INTO competences (parent_id, name, kind) VALUES (NULL, 'Bench B', 'main_group') RETURNING id
), grp AS (
    INSERT INTO competences (parent_id, name, kind) SELECT id, 'Bench B group', 'group' FROM top RETURNING id
)
INSERT INTO competences (parent_id, name, kind, default_valid_days)
SELECT grp.id, 'Competence ' || g, 'competence', CASE WHEN g %% 2 = 0 THEN 365 END
  FROM grp, generate_series(1, %(linked)s) AS g;

-- name: fairness_tenant_links
-- B's course number g grants its competences 1 + 2g and 2 + 2g, as seed_links does for A.
INSERT INTO links (course_id, competence_id, created_by, backfill_state)
SELECT %(first_course)s + g, c.id, 'bench', 'done'
  FROM generate_series(0, %(courses)s - 1) AS g
 CROSS JOIN generate_series(0, %(per_course)s - 1) AS k
  JOIN competences c ON c.tenant_id = app_tenant() AND c.kind = 'competence'
                    AND c.name = 'Competence ' || (1 + %(per_course)s * g + k);

-- name: fairness_tenant_rows
-- What B holds after seeding (the owner sees every tenant's rows: filtered here).
SELECT (SELECT count(*) FROM employees WHERE tenant_id = %(tenant)s) AS employees,
       (SELECT count(*) FROM courses WHERE tenant_id = %(tenant)s) AS courses,
       (SELECT count(*) FROM links WHERE tenant_id = %(tenant)s) AS links;

-- name: fairness_link_progress
SELECT backfill_state, backfill_processed, backfill_checkpoint->>'phase' AS phase
  FROM links WHERE id = %(link_id)s;

-- name: fairness_link_error
SELECT backfill_state, backfill_error FROM links WHERE id = %(link_id)s;

-- name: fairness_receipts
-- When the result worker's transaction that took each of B's webhooks began (now() in it).
SELECT webhook_id, extract(epoch FROM processed_at)::float8 AS at
  FROM webhook_receipts WHERE tenant_id = %(tenant)s AND webhook_id LIKE %(like)s;

-- name: fairness_waits
-- What this run's database backends are doing right now, by process (PGAPPNAME of each;
-- CPU: active and waiting on nothing).
SELECT coalesce(nullif(application_name, ''), '-') AS process,
       coalesce(wait_event_type || ':' || wait_event, 'CPU') AS what, count(*) AS n
  FROM pg_stat_activity
 WHERE datname = %(db)s AND state = 'active' AND pid <> pg_backend_pid()
 GROUP BY 1, 2;

-- name: fairness_bind_tenant
-- The session's tenant (as service/platform/db.py sets it on each checkout): the rows made next
-- default to it.
SELECT set_config('app.tenant_id', %(tenant)s, false);

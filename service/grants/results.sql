-- The result pipeline: set-based statements, one round trip per step for a whole batch.
-- Arrays are parallel: element i of every array describes event i.

-- name: claim_webhooks
-- Note webhook ids as processed; returns only those not seen before (redeliveries drop out).
INSERT INTO webhook_receipts (webhook_id, event_type)
SELECT * FROM unnest(%(webhook_ids)s::text[], %(types)s::text[])
ON CONFLICT (tenant_id, webhook_id) DO NOTHING
RETURNING webhook_id;

-- name: upsert_courses_seen
-- Add courses we have not seen yet to the catalog (a completion implies it was published).
INSERT INTO courses (id, name, guide_type, last_seen_at)
SELECT DISTINCT ON (id) id, name, guide_type, now()
FROM unnest(%(ids)s::bigint[], %(names)s::text[], %(guide_types)s::int[]) AS c (id, name, guide_type)
ORDER BY id
ON CONFLICT (tenant_id, id) DO NOTHING;

-- name: upsert_results
-- Record results and grant what the new or changed ones earn, in one statement. A result seen
-- before is updated only when its content changed and the incoming version is not older.
-- Each row is stored decided (employee and status as evaluate_results decides them: the status
-- is result_status, a rule of migration 0007), and the rows stored as 'granted' go straight to
-- the grant step that evaluate_results ends with (grant_classified): nothing is read back.
-- Returns one row per new or changed result (id, status, outcome; the rest NULL) and one per
-- grant created (id NULL; result_id and competence_id of the grant, renewed true when it
-- follows an earlier period of the employee and competence). The outcome says what the
-- result did (result_outcome, migration 0007).
-- The arrays travel in binary format (the "b" placeholders: nothing to format and escape per
-- element), except the scores: numbers of either kind, and text keeps their digits as given.
WITH RECURSIVE
-- include: store_incoming
,
classified AS (
    SELECT id, course_id, completed_at, webhook_id, employee_id, status AS new_status
      FROM upserted
),
-- include: grant_classified
SELECT u.id, u.status, result_outcome(u.status, gr.result_id IS NOT NULL) AS outcome,
       NULL::text AS result_id, NULL::bigint AS competence_id, NULL::boolean AS renewed
  FROM upserted u
  LEFT JOIN (SELECT DISTINCT result_id FROM granted) gr ON gr.result_id = u.id
UNION ALL
SELECT NULL, NULL, NULL, result_id, competence_id, renewed FROM granted;

-- name: evaluate_results
-- Apply rules 1, 2, 3, 5 and 6 (docs/rules.md) to the given stored results in one statement:
-- classify each result again (result_status), then grant every linked competence to the
-- matched employee (grant_classified). Returns one row per given result (id, status as decided
-- now, outcome as in upsert_results; the rest NULL) and one per grant created (id NULL;
-- employee_id, result_id, competence_id, renewed as in upsert_results).
WITH RECURSIVE
-- include: classify_stored
,
-- include: grant_classified
SELECT c.id, c.new_status AS status,
       result_outcome(c.new_status, gr.result_id IS NOT NULL) AS outcome,
       NULL::bigint AS employee_id, NULL::text AS result_id, NULL::bigint AS competence_id,
       NULL::boolean AS renewed
  FROM classified c
  LEFT JOIN (SELECT DISTINCT result_id FROM granted) gr ON gr.result_id = c.id
UNION ALL
SELECT NULL, NULL, NULL, employee_id, result_id, competence_id, renewed FROM granted;

-- name: grant_classified
-- Not a statement: the grant step that upsert_results and evaluate_results end with, on a
-- relation `classified` (id, course_id, completed_at, webhook_id, employee_id, new_status);
-- the statements including it begin WITH RECURSIVE for `decided` below.
-- Each result that earns a competence is decided against the periods the employee holds of it
-- (grant_period, migration 0009; the dates valid_from and valid_to, migration 0007), and the
-- results of one employee and competence in this batch one by one in completion order, each
-- seeing the grants the earlier ones made: one call decides as many calls in that order would
-- (docs/rules.md, rule 3). A grant revoked for this result, or revoked after this result was
-- completed, bars it (revocation_bars, migration 0007; rule 5). Existing grants are never
-- changed: what a result starts is a new row.
candidates AS (
    SELECT c.employee_id, l.competence_id, l.id AS link_id, c.id AS result_id, c.course_id,
           c.webhook_id, valid_from(c.completed_at, %(tz)s) AS day,
           comp.default_valid_days, comp.renewal_window_days,
           row_number() OVER (PARTITION BY c.employee_id, l.competence_id
                              ORDER BY c.completed_at, c.id) AS n
      FROM classified c
      JOIN links l ON l.course_id = c.course_id
      JOIN competences comp ON comp.id = l.competence_id
      -- A result that is the evidence of a grant of the competence (a redelivery, a
      -- reconciliation or a backfill of a result seen before) starts nothing more. Asked per
      -- candidate (OFFSET 0 keeps it a lookup in grants_employee_competence_idx): as an
      -- anti-join, planned while a new link's competence had next to no grants, it read every
      -- grant of the competence for each candidate, and a backfill grew with its square.
     CROSS JOIN LATERAL (
             SELECT EXISTS (
                      SELECT 1 FROM grants v
                       WHERE v.employee_id = c.employee_id AND v.competence_id = l.competence_id
                         AND (v.result_id = c.id
                              OR (v.revoked_at IS NOT NULL
                                  AND revocation_bars(v.result_id, v.revoked_at, c.id,
                                                      c.completed_at)))) AS seen
             OFFSET 0) evidence
     WHERE c.new_status = 'granted' AND NOT evidence.seen
),
-- The first candidate of each employee and competence against the periods stored, then each
-- next one against those plus what the earlier ones started (`held`). A batch with one result
-- per employee and competence (the result worker's) stops after the first step.
decided AS (
    SELECT cand.*, p.valid_from, p.valid_to,
           h.periods AS before,
           CASE WHEN p.valid_from IS NULL THEN h.periods
                ELSE h.periods || daterange(p.valid_from, p.valid_to, '[]') END AS held
      FROM candidates cand
     CROSS JOIN LATERAL (
             SELECT ARRAY(SELECT daterange(g.valid_from, g.valid_to, '[]')
                            FROM grants g
                           WHERE g.employee_id = cand.employee_id
                             AND g.competence_id = cand.competence_id
                             AND g.revoked_at IS NULL) AS periods
             OFFSET 0) h  -- read once per candidate (inlined, each use would read it again)
      LEFT JOIN LATERAL grant_period(cand.day, cand.default_valid_days,
                                     cand.renewal_window_days, h.periods) p ON true
     WHERE cand.n = 1
    UNION ALL
    SELECT cand.*, p.valid_from, p.valid_to, d.held,
           CASE WHEN p.valid_from IS NULL THEN d.held
                ELSE d.held || daterange(p.valid_from, p.valid_to, '[]') END
      FROM decided d
      JOIN candidates cand ON cand.employee_id = d.employee_id
                          AND cand.competence_id = d.competence_id AND cand.n = d.n + 1
      LEFT JOIN LATERAL grant_period(cand.day, cand.default_valid_days,
                                     cand.renewal_window_days, d.held) p ON true
),
-- A grant that overlaps one another transaction made meanwhile is not made (the exclusion
-- constraint grants_periods_excl): deciding after that transaction would not have made it.
inserted_grants AS (
INSERT INTO grants AS g (employee_id, competence_id, valid_from, valid_to, source,
                         course_id, result_id, webhook_id, link_id)
SELECT employee_id, competence_id, valid_from, valid_to, %(source)s, course_id, result_id,
       webhook_id, link_id
  FROM decided
 WHERE valid_from IS NOT NULL
ON CONFLICT DO NOTHING
RETURNING g.id, g.employee_id, g.competence_id, g.result_id
),
-- renewed: the new grant follows an earlier period of the same employee and competence.
granted AS (
    SELECT i.id, i.employee_id, i.competence_id, i.result_id,
           EXISTS (SELECT 1 FROM unnest(d.before) b
                    WHERE b << daterange(d.valid_from, d.valid_to, '[]')) AS renewed
      FROM inserted_grants i
      JOIN decided d ON d.result_id = i.result_id AND d.competence_id = i.competence_id
)

-- name: unmatched_result_ids_for_emails
-- Kept results that matched nobody, for any of the given normalised emails (served by the
-- partial index results_unmatched_idx).
SELECT id FROM results
 WHERE email_normalized = ANY(%(emails)s::text[]) AND status = 'unmatched';

-- name: upsert_course
-- Add or rename a course in the catalog.
INSERT INTO courses (id, name, guide_type, last_seen_at)
VALUES (%(id)s, %(name)s, %(guide_type)s, now())
ON CONFLICT (tenant_id, id) DO UPDATE
SET name = excluded.name, guide_type = excluded.guide_type, last_seen_at = now(),
    updated_at = now();

-- name: record_course_status
-- Remember a status change at the time it happened; a repeat of the same change is a no-op.
INSERT INTO course_status_changes (course_id, status, changed_at, source, webhook_id)
VALUES (%(course_id)s, %(status)s, %(changed_at)s, %(source)s, %(webhook_id)s)
ON CONFLICT (tenant_id, course_id, changed_at, status) DO NOTHING
RETURNING id;

-- name: refresh_course_status
-- The catalog's status is the course's status now (course_status_at, migration 0007).
UPDATE courses c
   SET status = s.status, status_changed_at = s.changed_at, updated_at = now()
  FROM course_status_at(%(course_id)s, 'infinity') s
 WHERE c.id = %(course_id)s
RETURNING c.status;

-- name: course_result_ids_since
-- Passed results of a course completed at or after a time (to re-decide after a status change).
SELECT id FROM results
 WHERE course_id = %(course_id)s AND passed AND completed_at >= %(since)s;

-- name: withdraw_grants_of_ungranting_results
-- Remove integration-made grants whose evidence is a result that, decided again, grants
-- nothing (its course turned out to be unpublished when it was completed); returns the
-- employees concerned so that their other results can be decided again.
DELETE FROM grants g
 USING results r
 WHERE g.result_id = r.id AND r.id = ANY(%(ids)s::text[])
   AND r.status = 'course_not_published' AND g.source <> 'manual'
   AND g.revoked_at IS NULL  -- a revoked grant stays as history and as a bar (rule 5)
RETURNING g.employee_id, g.competence_id;

-- name: granted_result_ids_for_employees
-- Results that grant something, of the given employees (to re-decide evidence).
SELECT id FROM results
 WHERE employee_id = ANY(%(employee_ids)s::bigint[]) AND status = 'granted';

-- name: store_incoming
-- Not a statement: storing results as upsert_results and store_results do, on the arrays of
-- upsert_results. A result seen before is updated only when its content changed and the
-- incoming version is not older; each row is stored decided (employee and status, the status
-- by result_status, migration 0007). Relations: `incoming` (the arrays) and `upserted` (the
-- rows written: id, status, course_id, completed_at, webhook_id, employee_id).
incoming AS (
    SELECT * FROM unnest(%(ids)b::text[], %(course_ids)b::bigint[], %(emails)b::text[],
                         %(emails_normalized)b::text[], %(first_names)b::text[],
                         %(last_names)b::text[], %(passed)b::boolean[], %(scores)s::numeric[],
                         %(completed_at)b::timestamptz[], %(changed_at)b::timestamptz[],
                         %(webhook_ids)b::text[], %(sources)b::text[])
           AS u (id, course_id, email, email_normalized, first_name, last_name, passed, score,
                 completed_at, changed_at, webhook_id, source)
),
upserted AS (
INSERT INTO results AS r (id, course_id, email, email_normalized, first_name, last_name,
                          passed, score, completed_at, changed_at, webhook_id, source,
                          employee_id, status)
SELECT i.id, i.course_id, i.email, i.email_normalized, i.first_name, i.last_name, i.passed,
       i.score, i.completed_at, i.changed_at, i.webhook_id, i.source, e.id, s.status
  FROM incoming i
  LEFT JOIN LATERAL (SELECT emp.id FROM employees emp
                      WHERE emp.email_normalized = i.email_normalized LIMIT 1) e ON true
  CROSS JOIN LATERAL result_status(i.passed, i.course_id, i.completed_at, e.id) s
ON CONFLICT (tenant_id, id) DO UPDATE
SET course_id = excluded.course_id, email = excluded.email,
    email_normalized = excluded.email_normalized, first_name = excluded.first_name,
    last_name = excluded.last_name, passed = excluded.passed, score = excluded.score,
    completed_at = excluded.completed_at, changed_at = excluded.changed_at,
    webhook_id = coalesce(excluded.webhook_id, r.webhook_id), source = excluded.source,
    employee_id = excluded.employee_id, status = excluded.status, updated_at = now()
WHERE (r.course_id, r.email_normalized, r.passed, r.score, r.completed_at)
      IS DISTINCT FROM
      (excluded.course_id, excluded.email_normalized, excluded.passed, excluded.score,
       excluded.completed_at)
  AND (r.changed_at IS NULL OR excluded.changed_at IS NULL OR excluded.changed_at >= r.changed_at)
RETURNING r.id, r.status, r.course_id, r.completed_at, r.webhook_id, r.employee_id
)

-- name: store_results
-- Store a backfill page's results decided but without granting (workers/backfill.py: the
-- grants are decided afterwards from the stored history, in completion order, by
-- grant_stored_results). Returns each given result's id and its status now, written or not.
WITH
-- include: store_incoming
SELECT i.id, coalesce(u.status, r.status) AS status
  FROM (SELECT DISTINCT id FROM incoming) i
  LEFT JOIN upserted u ON u.id = i.id
  LEFT JOIN results r ON r.id = i.id;

-- name: classify_stored
-- Not a statement: decide stored results again (their employee by email, their status by
-- result_status) and write what changed. Relations: `classified` (id, course_id,
-- completed_at, webhook_id, employee_id, new_status) and `marked`.
classified AS (
    SELECT res.id, res.course_id, res.completed_at, res.webhook_id, e.id AS employee_id,
           s.status AS new_status
      FROM results res
      -- LIMIT 1 (the email is unique anyway) keeps this a lookup in the email index per
      -- result: a plain join is planned as a hash join over every employee for each batch.
      LEFT JOIN LATERAL (SELECT emp.id FROM employees emp
                          WHERE emp.email_normalized = res.email_normalized LIMIT 1) e ON true
     CROSS JOIN LATERAL result_status(res.passed, res.course_id, res.completed_at, e.id) s
     WHERE res.id = ANY(%(ids)s::text[])
),
marked AS (
    UPDATE results SET status = c.new_status, employee_id = c.employee_id, updated_at = now()
      FROM classified c
     WHERE results.id = c.id
       AND (results.status, results.employee_id) IS DISTINCT FROM (c.new_status, c.employee_id)
    RETURNING results.id
)

-- name: classify_results
-- Decide the given stored results again without granting (a backfill's results that were
-- stored before its link existed, or before their employee did); returns how many changed.
WITH
-- include: classify_stored
SELECT count(*) AS changed FROM marked;

-- name: grant_stored_results
-- Grant what a course's stored results earn, chunk after chunk in completion order: of the
-- course's next `limit` results that grant (every part's, after (after_at, after_id)), those of
-- the employees whose id modulo `parts` is `part`. A backfill's decision from the whole history
-- it read (docs/rules.md, rule 3 and rule 4); an employee's grants depend on the order of that
-- employee's results only. The part is picked after the read, not in it: the planner cannot
-- estimate mod() and, misled, reads the whole course for each chunk; read so, each chunk is a
-- walk of `limit` entries of results_granted_order_idx (migration 0018). Returns one row per
-- grant created (kind 'grant') and one row (kind 'last') with the last result read and how
-- many were read, none when no result is left.
WITH RECURSIVE next_results AS (
    SELECT id, course_id, completed_at, webhook_id, employee_id
      FROM results
     WHERE course_id = %(course_id)s AND status = 'granted'
       AND (completed_at, id) > (%(after_at)s::timestamptz, %(after_id)s::text)
     ORDER BY completed_at, id
     LIMIT %(limit)s
),
classified AS (
    SELECT id, course_id, completed_at, webhook_id, employee_id, 'granted'::text AS new_status
      FROM next_results
     WHERE mod(employee_id, %(parts)s::int) = %(part)s::int
),
-- include: grant_classified
SELECT 'grant' AS kind, result_id, competence_id, renewed, NULL::timestamptz AS completed_at,
       NULL::bigint AS size
  FROM granted
UNION ALL
SELECT 'last', id, NULL, NULL, completed_at, (SELECT count(*) FROM next_results)
  FROM (SELECT id, completed_at FROM next_results ORDER BY completed_at DESC, id DESC LIMIT 1) l;

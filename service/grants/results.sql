-- The result pipeline: set-based statements, one round trip per step for a whole batch.
-- Arrays are parallel: element i of every array describes event i.

-- name: claim_webhooks
-- Note webhook ids as processed; returns only those not seen before (redeliveries drop out).
INSERT INTO webhook_receipts (webhook_id, event_type)
SELECT * FROM unnest(%(webhook_ids)s::text[], %(types)s::text[])
ON CONFLICT (webhook_id) DO NOTHING
RETURNING webhook_id;

-- name: upsert_courses_seen
-- Add courses we have not seen yet to the catalog (a completion implies it was published).
INSERT INTO courses (id, name, guide_type, last_seen_at)
SELECT DISTINCT ON (id) id, name, guide_type, now()
FROM unnest(%(ids)s::bigint[], %(names)s::text[], %(guide_types)s::int[]) AS c (id, name, guide_type)
ORDER BY id
ON CONFLICT (id) DO NOTHING;

-- name: upsert_results
-- Record results and grant what the new or changed ones earn, in one statement. A result seen
-- before is updated only when its content changed and the incoming version is not older.
-- Each row is stored decided (employee and status as evaluate_results decides them: the status
-- is result_status, a rule of migration 0007), and the rows stored as 'granted' go straight to
-- the grant step that evaluate_results ends with (grant_classified): nothing is read back.
-- Returns one row per new or changed result (id, status, outcome; the rest NULL) and one per
-- grant created or renewed (id NULL; result_id and competence_id of the grant, inserted true
-- for a new grant). The outcome says what the result did (result_outcome, migration 0007).
-- The arrays travel in binary format (the "b" placeholders: nothing to format and escape per
-- element), except the scores: numbers of either kind, and text keeps their digits as given.
WITH
-- include: store_incoming
,
classified AS (
    SELECT id, course_id, completed_at, webhook_id, employee_id, status AS new_status
      FROM upserted
),
-- include: grant_classified
SELECT u.id, u.status, result_outcome(u.status, gr.result_id IS NOT NULL) AS outcome,
       NULL::text AS result_id, NULL::bigint AS competence_id, NULL::boolean AS inserted
  FROM upserted u
  LEFT JOIN (SELECT DISTINCT result_id FROM granted) gr ON gr.result_id = u.id
UNION ALL
SELECT NULL, NULL, NULL, result_id, competence_id, inserted FROM granted;

-- name: evaluate_results
-- Apply rules 1, 2, 3, 5 and 6 (docs/rules.md) to the given stored results in one statement:
-- classify each result again (result_status), then grant every linked competence to the
-- matched employee (grant_classified). Returns one row per given result (id, status as decided
-- now, outcome as in upsert_results; the rest NULL) and one per grant created or renewed (id
-- NULL; result_id, competence_id, inserted).
WITH
-- include: classify_stored
,
-- include: grant_classified
SELECT c.id, c.new_status AS status,
       result_outcome(c.new_status, gr.result_id IS NOT NULL) AS outcome,
       NULL::bigint AS employee_id, NULL::text AS result_id, NULL::bigint AS competence_id,
       NULL::boolean AS inserted
  FROM classified c
  LEFT JOIN (SELECT DISTINCT result_id FROM granted) gr ON gr.result_id = c.id
UNION ALL
SELECT NULL, NULL, NULL, employee_id, result_id, competence_id, inserted FROM granted;

-- name: grant_classified
-- Not a statement: the grant step that upsert_results and evaluate_results end with, on a
-- relation `classified` (id, course_id, completed_at, webhook_id, employee_id, new_status).
-- The dates are valid_from and valid_to, the renewal test renews, a revocation's reach
-- revocation_bars (rules of migration 0007).
-- A new grant never overwrites an existing one; an integration-made grant of a competence that
-- opted into renewal is extended when a later result gives a later valid_to; a grant revoked
-- for this result, or revoked after this result was completed, is not re-created.
candidates AS (
    SELECT DISTINCT ON (c.employee_id, l.competence_id)
           c.employee_id, l.competence_id, l.id AS link_id, c.id AS result_id, c.course_id,
           c.webhook_id,
           valid_from(c.completed_at, %(tz)s) AS valid_from,
           valid_to(valid_from(c.completed_at, %(tz)s), comp.default_valid_days) AS valid_to,
           comp.renew_on_completion
      FROM classified c
      JOIN links l ON l.course_id = c.course_id
      JOIN competences comp ON comp.id = l.competence_id
     WHERE c.new_status = 'granted'
       AND NOT EXISTS (
             SELECT 1 FROM grant_revocations v
              WHERE v.employee_id = c.employee_id AND v.competence_id = l.competence_id
                AND revocation_bars(v.result_id, v.revoked_at, c.id, c.completed_at))
     ORDER BY c.employee_id, l.competence_id,
              -- renewal keeps the latest completion, otherwise the first one is the evidence
              CASE WHEN comp.renew_on_completion THEN c.completed_at END DESC NULLS LAST,
              c.completed_at, c.id
),
-- A grant the employee already holds and that the conflict clause below would leave as it is
-- (renews, as there) is left out here: the insert would only lock it (a WAL record each), which
-- is most of a backfill's work once its employees hold the competence.
changing AS (
    SELECT cand.*
      FROM candidates cand
     WHERE NOT EXISTS (
             SELECT 1 FROM grants g
              WHERE g.employee_id = cand.employee_id AND g.competence_id = cand.competence_id
                AND renews(g.source, g.valid_to, cand.valid_to, cand.renew_on_completion)
                    IS NOT TRUE)
),
granted AS (
INSERT INTO grants AS g (employee_id, competence_id, valid_from, valid_to, source,
                         course_id, result_id, webhook_id, link_id)
SELECT employee_id, competence_id, valid_from, valid_to, %(source)s, course_id, result_id,
       webhook_id, link_id
  FROM changing
ON CONFLICT (employee_id, competence_id) DO UPDATE
SET valid_to = excluded.valid_to, source = excluded.source, course_id = excluded.course_id,
    result_id = excluded.result_id, webhook_id = excluded.webhook_id,
    link_id = excluded.link_id, updated_at = now()
WHERE renews(g.source, g.valid_to, excluded.valid_to,
             (SELECT renew_on_completion FROM competences WHERE id = g.competence_id))
RETURNING g.id, g.employee_id, g.competence_id, g.result_id, (xmax = 0) AS inserted
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
ON CONFLICT (id) DO UPDATE
SET name = excluded.name, guide_type = excluded.guide_type, last_seen_at = now(),
    updated_at = now();

-- name: record_course_status
-- Remember a status change at the time it happened; a repeat of the same change is a no-op.
INSERT INTO course_status_changes (course_id, status, changed_at, source, webhook_id)
VALUES (%(course_id)s, %(status)s, %(changed_at)s, %(source)s, %(webhook_id)s)
ON CONFLICT (course_id, changed_at, status) DO NOTHING
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
ON CONFLICT (id) DO UPDATE
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
-- Grant what a course's stored results earn, the next `limit` of them in completion order after
-- (after_at, after_id): a backfill's decision from the whole history it read (docs/rules.md,
-- rule 3 and rule 4), chunk after chunk. Returns one row per grant created or renewed (kind
-- 'grant') and one row (kind 'last') with the chunk's last result and size, none when no
-- result is left.
WITH classified AS (
    SELECT id, course_id, completed_at, webhook_id, employee_id, status AS new_status
      FROM results
     WHERE course_id = %(course_id)s AND status = 'granted'
       AND (completed_at, id) > (%(after_at)s::timestamptz, %(after_id)s::text)
     ORDER BY completed_at, id
     LIMIT %(limit)s
),
-- include: grant_classified
SELECT 'grant' AS kind, result_id, competence_id, inserted, NULL::timestamptz AS completed_at,
       NULL::bigint AS size
  FROM granted
UNION ALL
SELECT 'last', id, NULL, NULL, completed_at, (SELECT count(*) FROM classified)
  FROM (SELECT id, completed_at FROM classified ORDER BY completed_at DESC, id DESC LIMIT 1) l;

-- Backfill, reconciliation and catalog refresh: what the service reads from InfoCaption's API.

-- name: backfill_link
-- One link with its course, locked for the page being committed (NULL when it was deleted).
SELECT l.id, l.course_id, l.competence_id, l.backfill_state, l.backfill_checkpoint,
       l.backfill_total, l.backfill_processed, l.backfill_granted, l.backfill_already_held,
       l.backfill_not_passed, l.backfill_not_published, l.backfill_unmatched, l.backfill_errors,
       l.backfill_started_at, l.backfill_finished_at, l.backfill_error,
       c.name AS course_name, c.guide_type, c.status AS course_status
  FROM links l
  JOIN courses c ON c.id = l.course_id
 WHERE l.id = %(link_id)s
   FOR NO KEY UPDATE OF l;

-- name: backfill_begin
-- Start a backfill from its first page: counters back to zero, a fresh checkpoint.
UPDATE links
   SET backfill_state = 'running', backfill_total = 0, backfill_processed = 0,
       backfill_granted = 0, backfill_already_held = 0, backfill_not_passed = 0,
       backfill_not_published = 0, backfill_unmatched = 0, backfill_errors = 0,
       backfill_started_at = now(), backfill_finished_at = NULL, backfill_error = NULL,
       backfill_checkpoint = %(checkpoint)s
 WHERE id = %(link_id)s
RETURNING backfill_checkpoint;

-- name: backfill_resume
-- Take up a backfill that stopped (killed, or failed on an unavailable InfoCaption).
UPDATE links
   SET backfill_state = 'running', backfill_error = NULL, backfill_finished_at = NULL,
       backfill_started_at = coalesce(backfill_started_at, now())
 WHERE id = %(link_id)s
RETURNING backfill_checkpoint;

-- name: backfill_page_progress
-- Count one committed page of results into the link's progress and move its checkpoint
-- (workers/backfill.py, count_outcomes: processed = granted + already_held + not_passed +
-- unmatched + errors; not_published is the part of not_passed that rule 6 decided).
UPDATE links l
   SET backfill_processed = l.backfill_processed + %(processed)s,
       backfill_granted = l.backfill_granted + %(granted)s,
       backfill_already_held = l.backfill_already_held + %(already_held)s,
       backfill_not_passed = l.backfill_not_passed + %(not_passed)s,
       backfill_not_published = l.backfill_not_published + %(not_published)s,
       backfill_unmatched = l.backfill_unmatched + %(unmatched)s,
       backfill_errors = l.backfill_errors + %(errors)s,
       backfill_total = greatest(%(total)s, l.backfill_processed + %(processed)s),
       -- the grants created so far: added up here, where the pages commit in order
       backfill_checkpoint = jsonb_set(%(checkpoint)s::jsonb, '{grants_created}', to_jsonb(
           coalesce((l.backfill_checkpoint ->> 'grants_created')::bigint, 0) + %(created)s))
 WHERE l.id = %(link_id)s
RETURNING l.backfill_total, l.backfill_processed, l.backfill_granted, l.backfill_already_held,
          l.backfill_not_passed, l.backfill_not_published, l.backfill_unmatched,
          l.backfill_errors, l.backfill_checkpoint;

-- name: backfill_move_checkpoint
-- Move a backfill's checkpoint without counting.
UPDATE links SET backfill_checkpoint = %(checkpoint)s WHERE id = %(link_id)s;

-- name: backfill_stored_progress
-- The sweep over stored results: add the results that granted the link's competence and move
-- the checkpoint (the other counters are taken from stored rows at the end).
UPDATE links
   SET backfill_granted = backfill_granted + %(granted)s, backfill_checkpoint = %(checkpoint)s
 WHERE id = %(link_id)s;

-- name: backfill_undecided_stored_results
-- Stored results of the course that may earn something through this link and were not
-- decided with it yet: received but not decided, decided before any link existed, granted
-- without this link's competence (and not revoked for it), or unmatched although an employee
-- with that email exists by now. Keyset-paged by id so each is visited once.
SELECT r.id
  FROM results r
 WHERE r.course_id = %(course_id)s
   AND r.id > %(after_id)s
   AND (r.status IN ('received', 'no_link')
        OR (r.status = 'granted'
            AND NOT EXISTS (SELECT 1 FROM grants g
                             WHERE g.employee_id = r.employee_id
                               AND g.competence_id = %(competence_id)s)
            AND NOT EXISTS (SELECT 1 FROM grant_revocations v
                             WHERE v.employee_id = r.employee_id
                               AND v.competence_id = %(competence_id)s
                               AND revocation_bars(v.result_id, v.revoked_at, r.id,
                                                   r.completed_at)))
        OR (r.status = 'unmatched'
            AND EXISTS (SELECT 1 FROM employees e WHERE e.email_normalized = r.email_normalized)))
 ORDER BY r.id
 LIMIT %(limit)s;

-- name: backfill_finish
-- End a backfill. The counters are taken from the course's stored results, so repeats and
-- results added while paging count once: processed = total = granted + already_held +
-- not_passed + unmatched + errors. granted (the results that granted the link's competence in
-- this run) and errors (records that could not be read or stored) were added up page by page;
-- already_held is the rest of the results that earn it.
UPDATE links l
   SET backfill_state = %(state)s, backfill_error = %(error)s, backfill_finished_at = now(),
       backfill_processed = s.decided + l.backfill_errors,
       backfill_total = s.decided + l.backfill_errors,
       backfill_granted = least(l.backfill_granted, s.earning),
       backfill_already_held = s.earning - least(l.backfill_granted, s.earning),
       backfill_not_passed = s.not_passed + s.not_published,
       backfill_not_published = s.not_published,
       backfill_unmatched = s.unmatched,
       backfill_checkpoint = %(checkpoint)s
  FROM (SELECT count(*) FILTER (WHERE status IN ('granted', 'failed', 'unmatched',
                                                 'course_not_published')) AS decided,
               count(*) FILTER (WHERE status = 'granted') AS earning,
               count(*) FILTER (WHERE status = 'unmatched') AS unmatched,
               count(*) FILTER (WHERE status = 'failed') AS not_passed,
               count(*) FILTER (WHERE status = 'course_not_published') AS not_published
          FROM results WHERE course_id = %(course_id)s) s
 WHERE l.id = %(link_id)s
RETURNING l.*;

-- name: backfill_fail
-- Stop a backfill on an error; the checkpoint stays so that a new run resumes from it.
UPDATE links
   SET backfill_state = 'failed', backfill_error = %(error)s, backfill_finished_at = now()
 WHERE id = %(link_id)s;

-- name: catalog_upsert_courses
-- Add or rename the courses the catalog lists; returns each with its current status.
INSERT INTO courses AS c (id, name, guide_type, last_seen_at)
SELECT * FROM unnest(%(ids)s::bigint[], %(names)s::text[], %(guide_types)s::int[],
                     %(seen)s::timestamptz[])
ON CONFLICT (id) DO UPDATE
SET name = excluded.name, guide_type = excluded.guide_type,
    last_seen_at = excluded.last_seen_at,
    updated_at = CASE WHEN (c.name, c.guide_type) IS DISTINCT FROM (excluded.name, excluded.guide_type)
                      THEN now() ELSE c.updated_at END
RETURNING c.id, c.name, c.guide_type, c.status,
          CASE WHEN isfinite(c.status_changed_at) THEN c.status_changed_at END AS status_changed_at;

-- name: catalog_missing_courses
-- Known courses the catalog no longer lists: published ones (they stopped being published or
-- were deleted) and linked unpublished ones (they may have been deleted since).
SELECT c.id, c.name, c.guide_type, c.status
  FROM courses c
 WHERE c.guide_type IN (14, 18)
   AND c.id <> ALL(%(listed)s::bigint[])
   AND (c.status = 'published'
        OR (c.status = 'unpublished' AND EXISTS (SELECT 1 FROM links l WHERE l.course_id = c.id)))
 ORDER BY c.id;

-- name: reconcile_courses
-- Linked, published courses with their reconciliation cursor (NULL before the first run)
-- and the time they were first linked (a backfill covers everything before it).
SELECT c.id, c.name, c.guide_type, min(l.created_at) AS linked_at, jc.cursor
  FROM courses c
  JOIN links l ON l.course_id = c.id
  LEFT JOIN job_cursors jc ON jc.name = 'reconcile:' || c.id
 WHERE c.status = 'published'
 GROUP BY c.id, c.name, c.guide_type, jc.cursor
 ORDER BY c.id;

-- name: save_job_cursor
-- Remember where a periodic job got to.
INSERT INTO job_cursors (name, cursor) VALUES (%(name)s, %(cursor)s)
ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, updated_at = now();

-- name: demo_find_competence
-- seed-demo: a competence tree node by name and parent (so a second seed reuses it).
SELECT id FROM competences
 WHERE name = %(name)s AND kind = %(kind)s AND parent_id IS NOT DISTINCT FROM %(parent_id)s
 ORDER BY id LIMIT 1;

-- name: demo_upsert_course
-- seed-demo: a course the demo links (the catalog refresh keeps it current afterwards).
INSERT INTO courses (id, name, guide_type, last_seen_at)
VALUES (%(id)s, %(name)s, %(guide_type)s, now())
ON CONFLICT (id) DO NOTHING;

-- name: keep_bad_record
-- Keep a record of InfoCaption's API that could not be read or stored (a dead letter of no
-- queue: ops see it, nothing replays it); the same record of the same course, still pending,
-- is kept once.
INSERT INTO dead_letters (queue, event_type, payload, error)
SELECT %(queue)s, 'infocaption.result', %(payload)s, %(error)s
 WHERE NOT EXISTS (SELECT 1 FROM dead_letters d
                    WHERE d.queue = %(queue)s AND d.replayed_at IS NULL
                      AND d.payload -> 'course_id' = to_jsonb(%(course_id)s::bigint)
                      AND d.payload ->> 'record' = %(record)s);

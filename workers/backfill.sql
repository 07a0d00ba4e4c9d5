-- The backfill of a link (workers/backfill.py): its row, checkpoint and counters.

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

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
-- Take up a backfill that stopped (killed, or failed on an unavailable InfoCaption), or join
-- one that runs: only while its run is still under way, so that a backfill another runner has
-- just finished stays done (no row then).
UPDATE links
   SET backfill_state = 'running', backfill_error = NULL, backfill_finished_at = NULL,
       backfill_started_at = coalesce(backfill_started_at, now())
 WHERE id = %(link_id)s AND backfill_state IN ('running', 'failed')
   AND backfill_checkpoint ->> 'phase' IN ('units', 'sweep')
RETURNING backfill_checkpoint;

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

-- name: backfill_page_progress
-- Count one stored page into the link's progress (workers/backfill.py, count_page): passed,
-- matched results count as already_held until the grants are decided, when those that
-- granted move to granted (backfill_grant_progress). processed = granted + already_held +
-- not_passed + unmatched + errors; not_published is the part of not_passed that rule 6 decided.
UPDATE links l
   SET backfill_processed = l.backfill_processed + %(processed)s,
       backfill_already_held = l.backfill_already_held + %(already_held)s,
       backfill_not_passed = l.backfill_not_passed + %(not_passed)s,
       backfill_not_published = l.backfill_not_published + %(not_published)s,
       backfill_unmatched = l.backfill_unmatched + %(unmatched)s,
       backfill_errors = l.backfill_errors + %(errors)s,
       backfill_total = greatest(%(total)s, l.backfill_processed + %(processed)s)
 WHERE l.id = %(link_id)s
RETURNING l.id, l.backfill_state, l.backfill_total, l.backfill_processed, l.backfill_granted,
          l.backfill_already_held, l.backfill_not_passed, l.backfill_not_published,
          l.backfill_unmatched, l.backfill_errors, l.backfill_checkpoint;

-- name: backfill_move_checkpoint
-- Move a backfill's checkpoint (read in the same transaction, under the link's row lock; the
-- grants a run created are added up by backfill_grant_progress).
UPDATE links SET backfill_checkpoint = %(checkpoint)s WHERE id = %(link_id)s;

-- name: backfill_units_create
-- The units of one run: ranges of `unit_pages` pages covering `pages` pages.
INSERT INTO backfill_units (link_id, run, first_page, last_page, next_page)
SELECT %(link_id)s, %(run)s, f, least(f + %(unit_pages)s - 1, %(pages)s), f
  FROM generate_series(1, %(pages)s, %(unit_pages)s) AS f
RETURNING first_page;

-- name: backfill_units_drop
-- Forget the units of a link's earlier runs (a new run starts).
DELETE FROM backfill_units WHERE link_id = %(link_id)s AND run <> %(run)s;

-- name: backfill_units_open
-- The units of a run not stored to their end, first pages first.
SELECT id, first_page FROM backfill_units
 WHERE link_id = %(link_id)s AND run = %(run)s AND done_at IS NULL
 ORDER BY first_page;

-- name: backfill_units_left
-- How many units of a run are open, and the smallest total the API reported in the run.
SELECT count(*) FILTER (WHERE done_at IS NULL) AS open, min(least_total) AS least_total
  FROM backfill_units WHERE link_id = %(link_id)s AND run = %(run)s;

-- name: backfill_unit
-- One unit, locked for the page being committed.
SELECT id, run, first_page, last_page, next_page, done_at, least_total
  FROM backfill_units WHERE id = %(id)s
   FOR UPDATE;

-- name: backfill_unit_progress
-- Move a unit past a stored page; `done` when it was the unit's last.
UPDATE backfill_units
   SET next_page = %(next_page)s, done_at = CASE WHEN %(done)s THEN now() END,
       least_total = least(coalesce(least_total, %(total)s), %(total)s)
 WHERE id = %(id)s;

-- name: backfill_units_close
-- Close every unit of a run (the course is gone: nothing more can be read).
UPDATE backfill_units SET done_at = now()
 WHERE link_id = %(link_id)s AND run = %(run)s AND done_at IS NULL;

-- name: backfill_try_lock
-- Take one of a backfill's session locks if it is free: a unit (namespace 1, the unit's id),
-- a link's classifying step (namespace 2, the link's id) or a part of its grant decision
-- (namespace 3, the part's id). The lock ends with the session, so
-- a killed worker's unit is free at once.
SELECT pg_try_advisory_lock(%(namespace)s::int, %(key)s::int) AS locked;

-- name: backfill_unlock
-- Give a backfill's session lock back.
SELECT pg_advisory_unlock(%(namespace)s::int, %(key)s::int) AS unlocked;

-- name: backfill_results_to_classify
-- Stored results of the course that a new link may change the status of, keyset-paged by id:
-- received but not decided, decided before any link existed, or unmatched although an
-- employee with that email exists by now.
SELECT r.id
  FROM results r
 WHERE r.course_id = %(course_id)s
   AND r.id > %(after_id)s
   AND (r.status IN ('received', 'no_link')
        OR (r.status = 'unmatched'
            AND EXISTS (SELECT 1 FROM employees e WHERE e.email_normalized = r.email_normalized)))
 ORDER BY r.id
 LIMIT %(limit)s;

-- name: backfill_sweep_parts_create
-- The parts of a run's grant decision, by employee.
INSERT INTO backfill_sweep_parts (link_id, run, part, parts)
SELECT %(link_id)s, %(run)s, p, %(parts)s FROM generate_series(0, %(parts)s - 1) AS p
ON CONFLICT (link_id, run, part) DO NOTHING;

-- name: backfill_sweep_parts_open
-- The parts of a run's grant decision not done.
SELECT id FROM backfill_sweep_parts
 WHERE link_id = %(link_id)s AND run = %(run)s AND done_at IS NULL
 ORDER BY part;

-- name: backfill_sweep_part
-- One part, locked for the chunk being decided.
SELECT id, part, parts, after_at, after_id, done_at FROM backfill_sweep_parts
 WHERE id = %(id)s
   FOR UPDATE;

-- name: backfill_sweep_part_progress
-- Move a part past a decided chunk; `done` when nothing was left.
UPDATE backfill_sweep_parts
   SET after_at = %(after_at)s, after_id = %(after_id)s,
       done_at = CASE WHEN %(done)s THEN now() END
 WHERE id = %(id)s;

-- name: backfill_grant_progress
-- A decided chunk: results that granted the link's competence move from already_held to
-- granted, and the grants created are added up in the checkpoint.
UPDATE links
   SET backfill_checkpoint = jsonb_set(backfill_checkpoint, '{grants_created}', to_jsonb(
           coalesce((backfill_checkpoint ->> 'grants_created')::bigint, 0) + %(created)s)),
       backfill_granted = backfill_granted + %(granted)s,
       backfill_already_held = greatest(0, backfill_already_held - %(granted)s)
 WHERE id = %(link_id)s;

-- name: backfill_sweep_parts_left
-- How many parts of a run's grant decision are not done.
SELECT count(*) AS open FROM backfill_sweep_parts
 WHERE link_id = %(link_id)s AND run = %(run)s AND done_at IS NULL;

-- name: backfill_forget_runs
-- A new run of a link's backfill begins: forget the units and grant parts of any run before.
WITH units AS (DELETE FROM backfill_units WHERE link_id = %(link_id)s)
DELETE FROM backfill_sweep_parts WHERE link_id = %(link_id)s;

-- The rules the grant statements of service/db/results.sql apply, each stated once, as
-- functions those statements call. LANGUAGE sql, one SELECT each and not volatile, so that the
-- planner inlines every call into the calling statement: the plans keep the shape of the
-- rules written out in place (a failed result still skips the lookups, the backfill's grants
-- that change nothing still skip the insert). tests/integration/test_grant_rules.py tests them one
-- by one. Changing a rule later is a new migration with CREATE OR REPLACE FUNCTION.
-- Parameters are spelt with the function's name where a table is in scope, so that a column
-- added later under the same name cannot take their place.

-- docs/rules.md, rule 3: a grant is valid from the day the result was completed, in the
-- organisation's time zone (23:30 UTC on 29 November is 30 November in Stockholm).
CREATE FUNCTION valid_from(completed_at timestamptz, tz text) RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (completed_at AT TIME ZONE tz)::date $$;

-- ... until the competence's default validity in days later; NULL days: it never expires
-- (valid_to NULL).
CREATE FUNCTION valid_to(first_day date, valid_days integer) RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT first_day + valid_days $$;

-- docs/rules.md, rule 6: the status a course had at a moment is that of its latest change at or
-- before it (by the change's own time, whatever order changes arrived in), with that change's
-- time; at 'infinity' it is the course's status now. No row: no change by then, and a course
-- is published until it changes (result_status says so). A table of zero or one row, so that
-- callers' plans can inline it.
CREATE FUNCTION course_status_at(course bigint, moment timestamptz)
    RETURNS TABLE (status text, changed_at timestamptz)
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT csc.status, csc.changed_at
      FROM course_status_changes csc
     WHERE csc.course_id = course_status_at.course AND csc.changed_at <= course_status_at.moment
     ORDER BY csc.changed_at DESC, csc.id DESC
     LIMIT 1
    $$;

-- docs/rules.md, rules 1, 2 and 6: what a result earns, the first that applies: 'failed' (not
-- passed), 'course_not_published' (the course was not published when it was completed),
-- 'unmatched' (no employee has its email), 'no_link' (its course grants no competence), else
-- 'granted' (every competence linked to its course, subject to rules 3 and 5). A table of one
-- row, called LATERAL: inlined, the lookups stay behind the tests before them.
CREATE FUNCTION result_status(passed boolean, course bigint, completed_at timestamptz,
                              employee bigint) RETURNS TABLE (status text)
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN NOT result_status.passed THEN 'failed'
                WHEN coalesce((SELECT s.status
                                 FROM course_status_at(result_status.course,
                                                       result_status.completed_at) s),
                              'published') <> 'published'
                     THEN 'course_not_published'
                WHEN result_status.employee IS NULL THEN 'unmatched'
                WHEN NOT EXISTS (SELECT 1 FROM links l WHERE l.course_id = result_status.course)
                     THEN 'no_link'
                ELSE 'granted' END
    $$;

-- What a result did, in the words of logs, metrics and backfill counters (Outcome in
-- service/domain/pipeline.py): from its status and whether it created or renewed a grant.
-- 'granted' when it did, 'already_held' when it earns the competence but created nothing (a
-- grant existed, or was revoked for it), 'not_passed' for a failed result, else its status.
CREATE FUNCTION result_outcome(status text, created_grant boolean) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN status = 'granted'
                     THEN CASE WHEN created_grant THEN 'granted' ELSE 'already_held' END
                WHEN status = 'failed' THEN 'not_passed'
                ELSE status END
    $$;

-- docs/rules.md, rule 5: a revocation bars re-granting its competence to its employee from the
-- result it revoked, and from every result completed before (or when) it was revoked; only a
-- later result grants it again.
CREATE FUNCTION revocation_bars(revoked_result_id text, revoked_at timestamptz, result_id text,
                                completed_at timestamptz) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT revoked_result_id = result_id OR revoked_at >= completed_at $$;

-- docs/rules.md, rule 3 (renewal): a result that earns a competence the employee already holds
-- extends the grant held only when the integration made it, it expires, the competence opted
-- into renewal (renew_on_completion) and the new grant would end later. Otherwise the grant
-- held stays as it is.
CREATE FUNCTION renews(held_source text, held_valid_to date, new_valid_to date,
                       renew_on_completion boolean) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT held_source <> 'manual' AND held_valid_to IS NOT NULL
       AND new_valid_to > held_valid_to AND renew_on_completion
    $$;

-- Why per employee, and the follow-up reports (docs/admin-api.md, "Results of an employee" and
-- "Reports"). Grants are periods: an employee may hold several grants of a competence over
-- time, and a grant with revoked_at set is revoked (grant_status, migration 0008, says which
-- status a grant has on a day).

-- name: employee_result_rows
-- Not a statement: the rows of one employee's results, shared by the count and the page. One
-- row per result and competence its course is linked to, or that the result was granted
-- (a link deleted later keeps its grants); a result of a course linked to nothing is one row
-- without a competence. Revocations are the rows kept in grant_revocations and the grants
-- that stay with revoked_at set.
WITH revoked AS (
    SELECT v.grant_id, v.competence_id, v.result_id, v.revoked_at
      FROM grant_revocations v
     WHERE v.employee_id = %(employee_id)s
    UNION ALL
    SELECT g.id, g.competence_id, g.result_id, g.revoked_at
      FROM grants g
     WHERE g.employee_id = %(employee_id)s AND g.revoked_at IS NOT NULL
),
held AS (
    SELECT g.id, g.competence_id, g.result_id
      FROM grants g
     WHERE g.employee_id = %(employee_id)s AND g.revoked_at IS NULL
),
result_rows AS (
    SELECT r.id AS result_id, r.course_id, co.name AS course_name, r.passed, r.completed_at,
           r.status, k.competence_id
      FROM employees e
      JOIN results r ON r.email_normalized = e.email_normalized
      LEFT JOIN courses co ON co.id = r.course_id
      LEFT JOIN LATERAL (
            SELECT l.competence_id FROM links l WHERE l.course_id = r.course_id
            UNION
            SELECT h.competence_id FROM held h WHERE h.result_id = r.id
            UNION
            SELECT v.competence_id FROM revoked v WHERE v.result_id = r.id
      ) k ON true
     WHERE e.id = %(employee_id)s
)

-- name: employee_exists
-- Whether the employee exists (a 404 otherwise).
SELECT EXISTS (SELECT 1 FROM employees WHERE id = %(employee_id)s) AS found;

-- name: employee_results_count
-- How many rows the employee's results make.
-- include: employee_result_rows
SELECT count(*) AS total FROM result_rows;

-- name: employee_results_page
-- One page of the employee's results with the outcome of each for each competence, newest
-- first. The outcome, the first that applies (docs/admin-api.md, "Results of an employee"):
-- 'granted' it made a grant that stands; 'revoked_before' a revocation of that competence
-- bars it (the grant it made was revoked, or it was completed before a revocation:
-- revocation_bars, migration 0007); 'already_held' it earns the competence and the employee
-- holds a grant of it that another result made; 'pending' it earns it and nothing is granted
-- yet (a backfill or a re-evaluation still to come); else what its stored status says:
-- 'not_passed', 'course_not_published', 'not_linked', and 'pending' for a result not yet
-- decided (received) or kept as unmatched.
-- include: employee_result_rows
SELECT rr.result_id, rr.course_id, rr.course_name, rr.passed, rr.completed_at,
       rr.competence_id, comp.name AS competence_name,
       coalesce(made.id, (SELECT max(v.grant_id) FROM revoked v
                           WHERE v.competence_id = rr.competence_id
                             AND v.result_id = rr.result_id)) AS grant_id,
       CASE WHEN made.id IS NOT NULL THEN 'granted'
            WHEN EXISTS (SELECT 1 FROM revoked v
                          WHERE v.competence_id = rr.competence_id
                            AND (v.result_id = rr.result_id
                                 OR (rr.status = 'granted'
                                     AND revocation_bars(v.result_id, v.revoked_at,
                                                         rr.result_id, rr.completed_at))))
                 THEN 'revoked_before'
            WHEN rr.status = 'granted'
                 THEN CASE WHEN EXISTS (SELECT 1 FROM held h
                                         WHERE h.competence_id = rr.competence_id)
                           THEN 'already_held' ELSE 'pending' END
            WHEN rr.status = 'failed' THEN 'not_passed'
            WHEN rr.status = 'course_not_published' THEN 'course_not_published'
            WHEN rr.status = 'no_link' THEN 'not_linked'
            ELSE 'pending' END AS outcome
  FROM result_rows rr
  LEFT JOIN competences comp ON comp.id = rr.competence_id
  LEFT JOIN LATERAL (SELECT min(h.id) AS id FROM held h
                      WHERE h.competence_id = rr.competence_id
                        AND h.result_id = rr.result_id) made ON true
 ORDER BY rr.completed_at DESC, rr.result_id, rr.competence_id NULLS FIRST
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: report_expiring_count
-- How many grants the expiring report lists, from the summary of latest grants (migration
-- 0010): a latest grant active today that ends within the window.
SELECT coalesce(sum(s.employees), 0)::bigint AS total
  FROM coverage_latest_grants s
 WHERE s.valid_to BETWEEN %(today)s AND %(today)s::date + %(within_days)s
   AND grant_status(s.valid_from, s.valid_to, NULL, %(today)s) = 'active'
   AND (%(competence_id)s::bigint IS NULL OR s.competence_id = %(competence_id)s)
   AND s.competence_id IN (SELECT id FROM competences);

-- name: report_expiring_page
-- Grants active today whose last day falls within the window, soonest first. A grant followed
-- by another of the same employee and competence that ends later (a renewal, upcoming) is
-- renewed and not listed.
SELECT g.id AS grant_id, g.employee_id, e.email AS employee_email,
       nullif(concat_ws(' ', e.first_name, e.last_name), '') AS employee_name,
       g.competence_id, c.name AS competence_name, g.valid_from, g.valid_to
  FROM grants g
  JOIN employees e ON e.id = g.employee_id
  JOIN competences c ON c.id = g.competence_id
 WHERE g.revoked_at IS NULL AND g.valid_to IS NOT NULL
   AND g.valid_to BETWEEN %(today)s AND %(today)s::date + %(within_days)s
   AND grant_status(g.valid_from, g.valid_to, g.revoked_at, %(today)s) = 'active'
   AND (%(competence_id)s::bigint IS NULL OR g.competence_id = %(competence_id)s)
   AND NOT EXISTS (SELECT 1 FROM grants n
                    WHERE n.employee_id = g.employee_id AND n.competence_id = g.competence_id
                      AND n.revoked_at IS NULL
                      AND coalesce(n.valid_to, 'infinity') > g.valid_to)
 ORDER BY g.valid_to, g.id
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: report_coverage_count
-- How many competences the coverage report lists (every leaf of the tree).
SELECT count(*) AS total FROM competences WHERE kind = 'competence';

-- name: report_coverage_page
-- Per competence, from the summaries of migration 0010: employees holding it active today
-- (the active edges up to today), whose latest grant is active and ends within the window
-- (expiring, not renewed), and whose latest grant has expired (expired and not renewed). The
-- page of competences is taken first, so only its competences are summed.
WITH page AS (
    SELECT c.id, c.name FROM competences c
     WHERE c.kind = 'competence'
     ORDER BY c.name, c.id
     LIMIT %(limit)s OFFSET %(offset)s
)
SELECT c.id AS competence_id, c.name AS competence_name,
       coalesce(a.active, 0) AS active, coalesce(l.expiring, 0) AS expiring,
       coalesce(l.expired, 0) AS expired_not_renewed
  FROM page c
  LEFT JOIN LATERAL (SELECT sum(x.delta) AS active FROM coverage_active_edges x
                      WHERE x.competence_id = c.id AND x.day <= %(today)s) a ON true
  LEFT JOIN LATERAL (
        SELECT sum(y.employees) FILTER (
                   WHERE grant_status(y.valid_from, y.valid_to, NULL, %(today)s) = 'active'
                     AND y.valid_to <= %(today)s::date + %(within_days)s) AS expiring,
               sum(y.employees) FILTER (
                   WHERE grant_status(y.valid_from, y.valid_to, NULL, %(today)s) = 'expired')
                   AS expired
          FROM coverage_latest_grants y
         WHERE y.competence_id = c.id) l ON true
 ORDER BY c.name, c.id;

-- name: coverage_compact
-- Fold the coverage summaries (migration 0010): days before the cutoff, which no report asks
-- about any more, into one row per competence.
SELECT coverage_compact(%(cutoff)s);

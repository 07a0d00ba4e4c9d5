-- What the reports of docs/admin-api.md ("Reports") read, so that they answer quickly with
-- millions of grants: an index for the expiring report and a small summary for the coverage
-- report and for the expiring report's total, kept by triggers on grants (docs/admin-api.md,
-- "How the reports stay fast"). Written for grants as periods: an employee may hold several
-- grants of a competence over time, and a grant with revoked_at set counts as revoked.

-- The expiring report walks the grants that are not revoked in order of their end date.
CREATE INDEX grants_expiring_idx ON grants (valid_to, id)
    WHERE revoked_at IS NULL AND valid_to IS NOT NULL;
-- ... and, for one competence, that competence's grants in order of their end date: the index
-- of grants by competence (the competence filter of the lists; deleting a competence's grants)
-- carries the end date too, so that it serves both (one index to keep, not two).
DROP INDEX grants_competence_id_idx;
CREATE INDEX grants_competence_id_idx ON grants (competence_id, valid_to, id);

-- "Active on a day" as the edges of intervals: each grant that is not revoked adds +1 on its
-- first day and -1 on the day after its last, so the grants of a competence active on day D
-- are the sum of the deltas at or before D. Rows are only ever added (no row is updated, so
-- concurrent transactions never wait on each other here); coverage_compact folds them.
-- No foreign key: a competence's rows outlive the statement that deletes it (they are
-- skipped, and folded away).
CREATE TABLE coverage_active_edges (
    competence_id bigint NOT NULL,
    day           date NOT NULL,   -- '-infinity': folded days before a compaction's cutoff
    delta         integer NOT NULL
);
CREATE INDEX coverage_active_edges_competence_day_idx ON coverage_active_edges (competence_id, day);

-- The latest grant (latest end, not revoked) of each employee and competence, counted by its
-- dates: expiring within N days on day D = latest grants with valid_from <= D <= valid_to <=
-- D + N; expired and not renewed = latest grants with valid_to < D. A latest grant that never
-- ends counts in neither and is not kept. Rows are only ever added (+1/-1), as above.
CREATE TABLE coverage_latest_grants (
    competence_id bigint NOT NULL,
    valid_from    date NOT NULL,   -- '-infinity' once before a compaction's cutoff
    valid_to      date NOT NULL,   -- '-infinity' once before it: expired, whatever the day
    employees     integer NOT NULL
);
CREATE INDEX coverage_latest_grants_competence_end_idx
    ON coverage_latest_grants (competence_id, valid_to);

-- What the summaries read of a grant (a row type of its own: smaller than a whole grants row
-- to gather and pass).
CREATE TYPE coverage_grant AS (id bigint, employee_id bigint, competence_id bigint,
                               valid_from date, valid_to date, revoked_at timestamptz);

-- Record what a change of grants does to both summaries: old_rows as they were before the
-- statement, new_rows as it left them (either may be empty). The latest grant of each pair
-- touched is taken before (the pair's grants now, less the new rows, plus the old rows) and
-- after (its grants now); the difference is added. Competences that are gone are skipped.
CREATE FUNCTION coverage_apply(old_rows coverage_grant[], new_rows coverage_grant[]) RETURNS void
    LANGUAGE sql VOLATILE
    AS $$
    INSERT INTO coverage_active_edges (competence_id, day, delta)
    SELECT c.competence_id, e.day, sum(e.delta * c.sign)
      FROM (SELECT o.competence_id, o.valid_from, o.valid_to, o.revoked_at, -1 AS sign
              FROM unnest(old_rows) o
            UNION ALL
            SELECT n.competence_id, n.valid_from, n.valid_to, n.revoked_at, 1
              FROM unnest(new_rows) n) c
     CROSS JOIN LATERAL (VALUES (c.valid_from, 1), (c.valid_to + 1, -1)) AS e (day, delta)
     WHERE c.revoked_at IS NULL AND e.day IS NOT NULL
       AND EXISTS (SELECT 1 FROM competences k WHERE k.id = c.competence_id)
     GROUP BY c.competence_id, e.day
    HAVING sum(e.delta * c.sign) <> 0;

    WITH pairs AS (
        SELECT DISTINCT p.employee_id, p.competence_id
          FROM (SELECT o.employee_id, o.competence_id FROM unnest(old_rows) o
                UNION ALL
                SELECT n.employee_id, n.competence_id FROM unnest(new_rows) n) p
         WHERE EXISTS (SELECT 1 FROM competences k WHERE k.id = p.competence_id)
    ),
    now_rows AS (
        SELECT g.id, g.employee_id, g.competence_id, g.valid_from, g.valid_to, g.revoked_at
          FROM pairs p
          JOIN grants g ON g.employee_id = p.employee_id AND g.competence_id = p.competence_id
    ),
    sides AS (
        SELECT r.employee_id, r.competence_id, r.valid_from, r.valid_to, r.revoked_at, 1 AS sign
          FROM now_rows r
        UNION ALL
        SELECT r.employee_id, r.competence_id, r.valid_from, r.valid_to, r.revoked_at, -1
          FROM now_rows r
         WHERE r.id NOT IN (SELECT n.id FROM unnest(new_rows) n)
        UNION ALL
        SELECT o.employee_id, o.competence_id, o.valid_from, o.valid_to, o.revoked_at, -1
          FROM unnest(old_rows) o
    ),
    latest AS (
        SELECT DISTINCT ON (s.employee_id, s.competence_id, s.sign)
               s.competence_id, s.valid_from, s.valid_to, s.sign
          FROM sides s
         WHERE s.revoked_at IS NULL
         ORDER BY s.employee_id, s.competence_id, s.sign,
                  coalesce(s.valid_to, 'infinity') DESC, s.valid_from
    )
    INSERT INTO coverage_latest_grants (competence_id, valid_from, valid_to, employees)
    SELECT l.competence_id, l.valid_from, l.valid_to, sum(l.sign)
      FROM latest l
     WHERE l.valid_to IS NOT NULL
     GROUP BY l.competence_id, l.valid_from, l.valid_to
    HAVING sum(l.sign) <> 0;
    $$;

-- The triggers: one a kind of change (a trigger with transition tables has one event), all
-- calling coverage_apply once a statement with every row the statement changed.
CREATE FUNCTION coverage_on_grants() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    old_rows coverage_grant[] := '{}';
    new_rows coverage_grant[] := '{}';
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT coalesce(array_agg((o.id, o.employee_id, o.competence_id, o.valid_from,
                                   o.valid_to, o.revoked_at)::coverage_grant), '{}')
          INTO old_rows FROM old_grants o;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        SELECT coalesce(array_agg((n.id, n.employee_id, n.competence_id, n.valid_from,
                                   n.valid_to, n.revoked_at)::coverage_grant), '{}')
          INTO new_rows FROM new_grants n;
    END IF;
    IF cardinality(old_rows) + cardinality(new_rows) > 0 THEN
        PERFORM coverage_apply(old_rows, new_rows);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER grants_coverage_insert AFTER INSERT ON grants
    REFERENCING NEW TABLE AS new_grants
    FOR EACH STATEMENT EXECUTE FUNCTION coverage_on_grants();
CREATE TRIGGER grants_coverage_update AFTER UPDATE ON grants
    REFERENCING OLD TABLE AS old_grants NEW TABLE AS new_grants
    FOR EACH STATEMENT EXECUTE FUNCTION coverage_on_grants();
CREATE TRIGGER grants_coverage_delete AFTER DELETE ON grants
    REFERENCING OLD TABLE AS old_grants
    FOR EACH STATEMENT EXECUTE FUNCTION coverage_on_grants();

-- Emptying grants empties the summaries (TRUNCATE fires no row triggers).
CREATE FUNCTION coverage_on_grants_truncate() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    DELETE FROM coverage_active_edges;
    DELETE FROM coverage_latest_grants;
    RETURN NULL;
END
$$;

CREATE TRIGGER grants_coverage_truncate AFTER TRUNCATE ON grants
    FOR EACH STATEMENT EXECUTE FUNCTION coverage_on_grants_truncate();

-- Fold the rows: one row per key, and every day before `cutoff` (a day no report asks about
-- any more: reports ask about today) folded to '-infinity', which keeps every count on a day at
-- or after the cutoff. Rows added while it runs are not seen by its DELETE and stay.
CREATE FUNCTION coverage_compact(cutoff date) RETURNS void
    LANGUAGE sql VOLATILE
    AS $$
    WITH gone AS (DELETE FROM coverage_active_edges RETURNING competence_id, day, delta)
    INSERT INTO coverage_active_edges (competence_id, day, delta)
    SELECT gone.competence_id, CASE WHEN gone.day < cutoff THEN '-infinity' ELSE gone.day END,
           sum(gone.delta)
      FROM gone
     WHERE EXISTS (SELECT 1 FROM competences k WHERE k.id = gone.competence_id)
     GROUP BY 1, 2
    HAVING sum(gone.delta) <> 0;

    WITH gone AS (DELETE FROM coverage_latest_grants
                  RETURNING competence_id, valid_from, valid_to, employees)
    INSERT INTO coverage_latest_grants (competence_id, valid_from, valid_to, employees)
    SELECT gone.competence_id,
           CASE WHEN gone.valid_from < cutoff THEN '-infinity' ELSE gone.valid_from END,
           CASE WHEN gone.valid_to < cutoff THEN '-infinity' ELSE gone.valid_to END,
           sum(gone.employees)
      FROM gone
     WHERE EXISTS (SELECT 1 FROM competences k WHERE k.id = gone.competence_id)
     GROUP BY 1, 2, 3
    HAVING sum(gone.employees) <> 0;
    $$;

-- Recompute both summaries from the grants (this migration, and a bulk load that ran without
-- triggers); the caller folds them with coverage_compact.
CREATE FUNCTION coverage_rebuild() RETURNS void
    LANGUAGE sql VOLATILE
    AS $$
    DELETE FROM coverage_active_edges;
    DELETE FROM coverage_latest_grants;

    INSERT INTO coverage_active_edges (competence_id, day, delta)
    SELECT g.competence_id, e.day, sum(e.delta)
      FROM grants g
     CROSS JOIN LATERAL (VALUES (g.valid_from, 1), (g.valid_to + 1, -1)) AS e (day, delta)
     WHERE g.revoked_at IS NULL AND e.day IS NOT NULL
     GROUP BY g.competence_id, e.day
    HAVING sum(e.delta) <> 0;

    INSERT INTO coverage_latest_grants (competence_id, valid_from, valid_to, employees)
    SELECT l.competence_id, l.valid_from, l.valid_to, count(*)
      FROM (SELECT DISTINCT ON (g.employee_id, g.competence_id)
                   g.competence_id, g.valid_from, g.valid_to
              FROM grants g
             WHERE g.revoked_at IS NULL
             ORDER BY g.employee_id, g.competence_id,
                      coalesce(g.valid_to, 'infinity') DESC, g.valid_from) l
     WHERE l.valid_to IS NOT NULL
     GROUP BY l.competence_id, l.valid_from, l.valid_to;
    $$;

SELECT coverage_rebuild();

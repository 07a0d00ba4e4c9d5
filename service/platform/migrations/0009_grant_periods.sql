-- Grants as periods (docs/rules.md, rule 3 and rule 5): an employee may hold several grants of
-- one competence over time, which never overlap; a revoked grant stays as a row of its own;
-- renewal_window_days replaces renew_on_completion. The grant step of
-- service/grants/results.sql calls the rule functions below.

-- The periods of one employee and competence never overlap (revoked grants aside): the
-- exclusion constraint states it, and is what the grant step's ON CONFLICT DO NOTHING meets
-- when two transactions decide the same employee and competence at once (the later one
-- creates nothing, as deciding it after the first would).
-- The constraint is on one box per grant, so that PostgreSQL's own R-tree (GiST on boxes, no
-- extension: the embedded database has none) checks it at the cost of one lookup: x is the
-- employee; y is the competence times 2^22 plus the days since 1900-01-01 (2^22 days is over
-- 11,000 years; earlier and later days are clamped, null valid_to is the last day). Two boxes
-- overlap exactly when the employee and the competence are the same and the periods share a
-- day. Exact in float8 for ids below 2^53 (employees) and 2^31 (competences).
CREATE FUNCTION grant_extent(employee bigint, competence bigint, first_day date, last_day date)
    RETURNS box
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT box(point(employee::float8,
                     competence::float8 * 4194304
                     + least(greatest(first_day - date '1900-01-01', 0), 4194303)),
               point(employee::float8,
                     competence::float8 * 4194304
                     + least(greatest(coalesce(last_day - date '1900-01-01', 4194303), 0), 4194303)))
    $$;

ALTER TABLE grants DROP CONSTRAINT grants_employee_competence_key;
ALTER TABLE grants
    ADD CONSTRAINT grants_periods_excl
        EXCLUDE USING gist (grant_extent(employee_id, competence_id, valid_from, valid_to) WITH &&)
        WHERE (revoked_at IS NULL);
-- The grant step reads every grant of an employee and competence (the periods held, the
-- revocations that bar); the lists read an employee's grants, current and past, revoked too.
CREATE INDEX grants_employee_competence_idx ON grants (employee_id, competence_id, valid_from);

-- A revocation kept in grant_revocations becomes the revoked grant row it describes, under the
-- grant's own id (ids are never reused, so no live grant has it), with the evidence the audit
-- row of the revocation kept of the grant where there is one.
INSERT INTO grants (id, employee_id, competence_id, valid_from, valid_to, source, course_id,
                    result_id, webhook_id, link_id, created_at, updated_at, revoked_at,
                    revoked_reason, revoked_by)
SELECT CASE WHEN EXISTS (SELECT 1 FROM grants g WHERE g.id = v.grant_id)
            THEN nextval(pg_get_serial_sequence('grants', 'id')) ELSE v.grant_id END,
       v.employee_id, v.competence_id, v.valid_from, v.valid_to,
       coalesce(a.before ->> 'source',
                CASE WHEN v.result_id IS NULL THEN 'manual' ELSE 'webhook' END),
       (a.before ->> 'course_id')::bigint, v.result_id, a.before ->> 'webhook_id',
       (a.before ->> 'link_id')::bigint,
       coalesce((a.before ->> 'created_at')::timestamptz, v.revoked_at), v.revoked_at,
       v.revoked_at, v.reason, v.revoked_by
  FROM (SELECT DISTINCT ON (grant_id) * FROM grant_revocations ORDER BY grant_id, id DESC) v
  LEFT JOIN LATERAL (SELECT al.before FROM audit_log al
                      WHERE al.action = 'grant.revoke' AND al.target = 'grant:' || v.grant_id
                      ORDER BY al.id DESC LIMIT 1) a ON true;

DROP TABLE grant_revocations;

-- The revocations, as the revoked grants they are, for readers that ask only for them (a
-- backfill's sweep over stored results asks whether a revocation bars a result).
CREATE VIEW grant_revocations AS
SELECT g.id, g.id AS grant_id, g.employee_id, g.competence_id, g.result_id, g.valid_from,
       g.valid_to, g.revoked_reason AS reason, g.revoked_by, g.revoked_at
  FROM grants g
 WHERE g.revoked_at IS NOT NULL;

-- A competence that renewed on completion renewed on any pass while it was held: a window as
-- long as its validity says the same in the new words. One that did not waits for expiry.
UPDATE competences
   SET renewal_window_days = least(default_valid_days, 36600)
 WHERE renew_on_completion AND default_valid_days IS NOT NULL;
ALTER TABLE competences DROP COLUMN renew_on_completion;

-- The old renewal test (a grant extended in place) no longer applies: a renewal is a new grant.
DROP FUNCTION renews(text, date, date, boolean);

-- docs/rules.md, rule 3: the grant a pass on `day` starts, given the periods of the same
-- employee and competence already held (not revoked): none held on that day, a grant from that
-- day; one held on that day (active, the one that ends last) whose end lies within
-- window_days, the next grant from the day after it ends; otherwise nothing. The grant is
-- made only where it overlaps no period held (a late result adds an earlier grant only where
-- it fits; an upcoming grant already continuing the one held leaves nothing to start). Zero
-- rows: the pass starts nothing. A table of zero or one row, called LATERAL: inlined into the
-- grant step.
CREATE FUNCTION grant_period(day date, valid_days integer, window_days integer,
                             held daterange[])
    RETURNS TABLE (valid_from date, valid_to date)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT s.first_day, valid_to(s.first_day, grant_period.valid_days)
      FROM (SELECT CASE WHEN a.held_until IS NULL THEN grant_period.day
                        WHEN a.held_until = 'infinity' THEN NULL
                        WHEN grant_period.window_days IS NOT NULL
                             AND grant_period.day >= a.held_until - grant_period.window_days
                             THEN a.held_until + 1
                   END AS first_day
              FROM (SELECT max(coalesce(upper(h) - 1, 'infinity'::date)) AS held_until
                      FROM unnest(grant_period.held) AS h
                     WHERE h @> grant_period.day) a) s
     WHERE s.first_day IS NOT NULL
       AND NOT daterange(s.first_day, valid_to(s.first_day, grant_period.valid_days), '[]')
               && ANY (grant_period.held)
    $$;

-- The columns and the status rule that grant periods build on (docs/rules.md, rule 3 and
-- rule 5; docs/admin-api.md, "Grants"). Nothing reads them yet: the grant step, revocations
-- and the competence API move onto them in the migrations that follow.

-- A revoked grant stays in the employee's history as a row of its own, with why and when.
ALTER TABLE grants
    ADD COLUMN revoked_at     timestamptz,
    ADD COLUMN revoked_reason text,
    ADD COLUMN revoked_by     text,
    ADD CONSTRAINT grants_revocation_check
        CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL)
               AND (revoked_reason IS NULL OR length(btrim(revoked_reason)) > 0));

-- How many days before a grant ends a new pass starts the next grant (the day after it ends).
-- NULL: a new grant only after the latest one expired.
ALTER TABLE competences
    ADD COLUMN renewal_window_days integer
        CHECK (renewal_window_days IS NULL OR renewal_window_days BETWEEN 0 AND 36600);

-- A grant's status on a day (docs/rules.md, "The status of a grant"): revoked, upcoming (starts later),
-- expired (ended before the day) or active. The day is a date in the organisation's time zone.
CREATE FUNCTION grant_status(valid_from date, valid_to date, revoked_at timestamptz, day date)
    RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
                WHEN valid_from > day THEN 'upcoming'
                WHEN valid_to IS NOT NULL AND valid_to < day THEN 'expired'
                ELSE 'active' END
    $$;

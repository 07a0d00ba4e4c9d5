-- A link's backfill counters in the words of docs/admin-api.md (workers/backfill.py says how
-- each is counted): granted = results that granted the link's competence (grants created),
-- already_held = passed results that earn it but created nothing, not_passed (including
-- not_published: passed while the course was not published, rule 6), unmatched, errors =
-- records that could not be read or stored. processed = granted + already_held + not_passed +
-- unmatched + errors. backfill_failed mixed not passed, not published and unreadable records.
ALTER TABLE links
    ADD COLUMN backfill_already_held  integer NOT NULL DEFAULT 0,
    ADD COLUMN backfill_not_passed    integer NOT NULL DEFAULT 0,
    ADD COLUMN backfill_not_published integer NOT NULL DEFAULT 0,
    ADD COLUMN backfill_errors        integer NOT NULL DEFAULT 0;

-- Rows counted the old way. backfill_granted counted the passed results that earn the
-- competence: the grants the run created (its checkpoint's grants_created) become granted, the
-- rest already_held. backfill_failed splits by the breakdown a finished run kept in its
-- checkpoint (unreadable records -> errors, not published -> not_passed and not_published);
-- a run that had not finished kept only its unreadable records (skipped). The sum stays the
-- same, so processed keeps its value.
UPDATE links l
   SET backfill_granted = o.granted_new,
       backfill_already_held = l.backfill_granted - o.granted_new,
       backfill_errors = o.errors,
       backfill_not_passed = l.backfill_failed - o.errors,
       backfill_not_published = least(l.backfill_failed - o.errors, o.not_published)
  FROM (SELECT id,
               least(backfill_granted, greatest(0, coalesce(
                   (backfill_checkpoint ->> 'grants_created')::bigint, 0)))::integer AS granted_new,
               least(backfill_failed, greatest(0, coalesce(
                   (backfill_checkpoint ->> 'failed_unreadable')::bigint,
                   (backfill_checkpoint ->> 'skipped')::bigint, 0)))::integer AS errors,
               greatest(0, coalesce(
                   (backfill_checkpoint ->> 'failed_course_not_published')::bigint, 0))::integer
                   AS not_published
          FROM links) o
 WHERE l.id = o.id;

ALTER TABLE links DROP COLUMN backfill_failed;

-- The backfill's grant decision reads a course's results that earn something chunk after
-- chunk in completion order (grant_stored_results, keyset on (completed_at, id)). Without an
-- index in that order each chunk read every later result of the course and sorted them: the
-- sweep grew with the square of the course's history (docs/processes.md, "The backfill").
-- Partial: only the results that grant are in it; tenant first, as the policy asks for it.
CREATE INDEX results_granted_order_idx ON results (tenant_id, course_id, completed_at, id)
 WHERE status = 'granted';

-- Every query that looks results up by email also asks for status = 'unmatched', which the
-- partial index results_unmatched_idx serves; the full index was only maintained, one entry
-- per stored result.
DROP INDEX IF EXISTS results_email_normalized_idx;

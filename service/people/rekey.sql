-- Email keys made before rule 2 (docs/rules.md) was exact (they were case-folded: `straße` was keyed
-- `strasse`) are made again once, by `competence-bridge migrate` (service/platform/migrate.py).
-- Only addresses that are not plain ASCII can have changed.

-- name: rekey_take_mark
-- Note that the keys follow the current rule; no row back when they did already.
INSERT INTO job_cursors (name, cursor) VALUES (%(name)s, %(cursor)s)
ON CONFLICT (tenant_id, name) DO UPDATE SET cursor = excluded.cursor, updated_at = now()
WHERE job_cursors.cursor IS DISTINCT FROM excluded.cursor
RETURNING name;

-- name: rekey_employees_to_check
SELECT id, email, email_normalized FROM employees WHERE email ~ '[^ -~]';

-- name: rekey_employee
UPDATE employees SET email_normalized = %(key)s, updated_at = now() WHERE id = %(id)s;

-- name: rekey_results_to_check
SELECT id, email, email_normalized FROM results WHERE email ~ '[^ -~]';

-- name: rekey_results
UPDATE results r SET email_normalized = k.key, updated_at = now()
  FROM unnest(%(ids)s::text[], %(keys)s::text[]) AS k (id, key)
 WHERE r.id = k.id;

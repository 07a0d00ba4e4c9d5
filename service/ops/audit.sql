-- The audit log.

-- name: admin_audit_count
-- Audit rows, optionally by actor, action and/or target.
SELECT count(*) AS total FROM audit_log
 WHERE (%(actor)s::text IS NULL OR actor = %(actor)s)
   AND (%(action)s::text IS NULL OR action = %(action)s)
   AND (%(target)s::text IS NULL OR target = %(target)s);

-- name: admin_audit_page
-- One page of the audit log, newest first.
SELECT id, actor, action, target, before, after, at FROM audit_log
 WHERE (%(actor)s::text IS NULL OR actor = %(actor)s)
   AND (%(action)s::text IS NULL OR action = %(action)s)
   AND (%(target)s::text IS NULL OR target = %(target)s)
 ORDER BY id DESC
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: insert_audit
-- One audit row: who, what, before/after.
INSERT INTO audit_log (actor, action, target, before, after)
VALUES (%(actor)s, %(action)s, %(target)s, %(before)s, %(after)s)
RETURNING id;

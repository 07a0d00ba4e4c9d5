-- Grants as admins see them (current and past, with their status), and revocations.

-- name: admin_grants_count
-- Grants, optionally of one employee, of one competence, with one status on a day and/or one
-- grant (its id).
SELECT count(*) AS total FROM grants g
 WHERE (%(employee_id)s::bigint IS NULL OR g.employee_id = %(employee_id)s)
   AND (%(competence_id)s::bigint IS NULL OR g.competence_id = %(competence_id)s)
   AND (%(status)s::text IS NULL
        OR grant_status(g.valid_from, g.valid_to, g.revoked_at, %(day)s::date) = %(status)s)
   AND (%(id)s::bigint IS NULL OR g.id = %(id)s);

-- name: admin_grants_page
-- One page of grants with their evidence, validity, status on a day (grant_status, migration
-- 0008) and the names a person reads; filtered as admin_grants_count.
SELECT g.id, g.employee_id, e.email AS employee_email,
       nullif(concat_ws(' ', e.first_name, e.last_name), '') AS employee_name,
       g.competence_id, c.name AS competence_name, g.valid_from, g.valid_to,
       grant_status(g.valid_from, g.valid_to, g.revoked_at, %(day)s::date) AS status,
       g.source, g.course_id, g.result_id, g.webhook_id, g.link_id, g.created_at, g.updated_at,
       g.revoked_at, g.revoked_reason, g.revoked_by
  FROM grants g
  JOIN employees e ON e.id = g.employee_id
  JOIN competences c ON c.id = g.competence_id
 WHERE (%(employee_id)s::bigint IS NULL OR g.employee_id = %(employee_id)s)
   AND (%(competence_id)s::bigint IS NULL OR g.competence_id = %(competence_id)s)
   AND (%(status)s::text IS NULL
        OR grant_status(g.valid_from, g.valid_to, g.revoked_at, %(day)s::date) = %(status)s)
   AND (%(id)s::bigint IS NULL OR g.id = %(id)s)
 ORDER BY g.id
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: admin_grant_revoke
-- Mark one grant revoked (docs/rules.md, rule 5): the row stays in the history with why, who
-- and when. Nothing when it does not exist or is revoked already.
UPDATE grants
   SET revoked_at = now(), revoked_reason = %(reason)s, revoked_by = %(revoked_by)s,
       updated_at = now()
 WHERE id = %(id)s AND revoked_at IS NULL
RETURNING id;

-- name: admin_grant_revocation_of_grant
-- A grant's revocation, if it was revoked (a second revocation is a 409).
SELECT id, revoked_reason AS reason, revoked_by, revoked_at FROM grants
 WHERE id = %(grant_id)s AND revoked_at IS NOT NULL;

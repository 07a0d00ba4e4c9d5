-- Grants as admins see them, and revocations.

-- name: admin_grants_count
-- Grants, optionally of one employee and/or one competence.
SELECT count(*) AS total FROM grants g
 WHERE (%(employee_id)s::bigint IS NULL OR g.employee_id = %(employee_id)s)
   AND (%(competence_id)s::bigint IS NULL OR g.competence_id = %(competence_id)s);

-- name: admin_grants_page
-- One page of grants with their evidence and validity.
SELECT g.id, g.employee_id, g.competence_id, g.valid_from, g.valid_to, g.source, g.course_id,
       g.result_id, g.webhook_id, g.link_id, g.created_at, g.updated_at
  FROM grants g
 WHERE (%(employee_id)s::bigint IS NULL OR g.employee_id = %(employee_id)s)
   AND (%(competence_id)s::bigint IS NULL OR g.competence_id = %(competence_id)s)
 ORDER BY g.id
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: admin_grant_delete
-- Remove one grant (a revocation), returning what it was.
DELETE FROM grants WHERE id = %(id)s
RETURNING id, employee_id, competence_id, valid_from, valid_to, source, course_id, result_id,
          webhook_id, link_id, created_at, updated_at;

-- name: admin_grant_revocation_insert
-- Remember a revocation so that the same result never grants it again (docs/rules.md, rule 5).
INSERT INTO grant_revocations (grant_id, employee_id, competence_id, result_id, valid_from,
                               valid_to, reason, revoked_by)
VALUES (%(grant_id)s, %(employee_id)s, %(competence_id)s, %(result_id)s, %(valid_from)s,
        %(valid_to)s, %(reason)s, %(revoked_by)s)
RETURNING id, grant_id, employee_id, competence_id, result_id, valid_from, valid_to, reason,
          revoked_by, revoked_at;

-- name: admin_grant_revocation_of_grant
-- The revocation of a grant that is gone, if it was revoked (a second revocation is a 409).
SELECT id, reason, revoked_by, revoked_at FROM grant_revocations
 WHERE grant_id = %(grant_id)s
 ORDER BY id DESC
 LIMIT 1;

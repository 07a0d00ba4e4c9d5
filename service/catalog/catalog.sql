-- The catalog as admins manage it: courses, the competence tree, links.

-- name: admin_courses_count
-- Published courses (never guides), optionally filtered by a name pattern.
SELECT count(*) AS total
  FROM courses
 WHERE status = 'published' AND guide_type = ANY(%(guide_types)s::int[])
   AND (%(pattern)s::text IS NULL OR name ILIKE %(pattern)s);

-- name: admin_courses_page
-- One page of published courses by name.
SELECT id, name, guide_type, status, last_seen_at
  FROM courses
 WHERE status = 'published' AND guide_type = ANY(%(guide_types)s::int[])
   AND (%(pattern)s::text IS NULL OR name ILIKE %(pattern)s)
 ORDER BY name, id
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: admin_course_get
-- One course of the catalog, whatever its status or guide type (to check a new link).
SELECT id, name, guide_type, status FROM courses WHERE id = %(id)s FOR KEY SHARE;

-- name: admin_links_count
-- Links, optionally of one course and/or one competence.
SELECT count(*) AS total
  FROM links l
 WHERE (%(course_id)s::bigint IS NULL OR l.course_id = %(course_id)s)
   AND (%(competence_id)s::bigint IS NULL OR l.competence_id = %(competence_id)s);

-- name: link_row
-- Not a statement: a link as the API shows it, with its course's status and the backfill's
-- progress (admin_links_page and admin_link_get add which links).
SELECT l.id, l.course_id, c.name AS course_name, c.status AS course_status,
       l.competence_id, comp.name AS competence_name, l.created_at, l.created_by,
       l.backfill_state, l.backfill_total, l.backfill_processed, l.backfill_granted,
       l.backfill_already_held, l.backfill_not_passed, l.backfill_not_published,
       l.backfill_unmatched, l.backfill_errors, l.backfill_started_at, l.backfill_finished_at,
       l.backfill_error
  FROM links l
  JOIN courses c ON c.id = l.course_id
  JOIN competences comp ON comp.id = l.competence_id

-- name: admin_links_page
-- One page of links.
-- include: link_row
 WHERE (%(course_id)s::bigint IS NULL OR l.course_id = %(course_id)s)
   AND (%(competence_id)s::bigint IS NULL OR l.competence_id = %(competence_id)s)
 ORDER BY l.id
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: admin_link_get
-- One link.
-- include: link_row
 WHERE l.id = %(id)s;

-- name: admin_link_insert
-- A new link; nothing when the pair exists already.
INSERT INTO links (course_id, competence_id, created_by)
VALUES (%(course_id)s, %(competence_id)s, %(created_by)s)
ON CONFLICT (course_id, competence_id) DO NOTHING
RETURNING id;

-- name: admin_link_find
-- The link of a pair, if any.
SELECT id FROM links WHERE course_id = %(course_id)s AND competence_id = %(competence_id)s;

-- name: admin_link_delete
-- Delete a link; its grants stay (grants.link_id has no foreign key on purpose).
DELETE FROM links WHERE id = %(id)s
RETURNING id, course_id, competence_id, created_at, created_by, backfill_state;

-- name: admin_competences_count
-- Nodes of the competence tree, optionally of one parent and/or one kind.
SELECT count(*) AS total
  FROM competences c
 WHERE (%(parent_id)s::bigint IS NULL OR c.parent_id = %(parent_id)s)
   AND (%(kind)s::text IS NULL OR c.kind = %(kind)s);

-- name: admin_competences_page
-- One page of the tree in depth-first order: each main group, then its groups, each followed
-- by its competences.
SELECT c.id, c.parent_id, c.name, c.kind, c.default_valid_days, c.renewal_window_days,
       c.created_at, c.updated_at
  FROM competences c
  LEFT JOIN competences p ON p.id = c.parent_id
 WHERE (%(parent_id)s::bigint IS NULL OR c.parent_id = %(parent_id)s)
   AND (%(kind)s::text IS NULL OR c.kind = %(kind)s)
 ORDER BY coalesce(p.parent_id, p.id, c.id),
          CASE c.kind WHEN 'main_group' THEN 0 WHEN 'group' THEN c.id ELSE p.id END,
          CASE c.kind WHEN 'competence' THEN c.id ELSE 0 END
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: admin_competence_get
-- One node of the tree.
SELECT id, parent_id, name, kind, default_valid_days, renewal_window_days, created_at, updated_at
  FROM competences WHERE id = %(id)s;

-- name: admin_competence_lock
-- One node, locked against changes and deletion until the transaction ends.
SELECT id, parent_id, name, kind, default_valid_days, renewal_window_days, created_at, updated_at
  FROM competences WHERE id = %(id)s FOR UPDATE;

-- name: admin_competence_share
-- One node, kept from being deleted or changed while a child or a link is added to it.
SELECT id, kind FROM competences WHERE id = %(id)s FOR SHARE;

-- name: admin_competence_insert
-- A new node of the tree.
INSERT INTO competences (parent_id, name, kind, default_valid_days, renewal_window_days)
VALUES (%(parent_id)s, %(name)s, %(kind)s, %(default_valid_days)s, %(renewal_window_days)s)
RETURNING id, parent_id, name, kind, default_valid_days, renewal_window_days, created_at, updated_at;

-- name: admin_competence_update
-- Rename, move or reconfigure a node.
UPDATE competences
   SET parent_id = %(parent_id)s, name = %(name)s, default_valid_days = %(default_valid_days)s,
       renewal_window_days = %(renewal_window_days)s, updated_at = now()
 WHERE id = %(id)s
RETURNING id, parent_id, name, kind, default_valid_days, renewal_window_days, created_at, updated_at;

-- name: admin_competence_children
-- Some children of a node (a node with children cannot be deleted).
SELECT id FROM competences WHERE parent_id = %(id)s ORDER BY id LIMIT %(limit)s;

-- name: admin_competence_delete_grants
-- Delete every grant of a competence (docs/rules.md, rule 5) and count them.
WITH deleted AS (
    DELETE FROM grants WHERE competence_id = %(id)s RETURNING id
)
SELECT count(*) AS n FROM deleted;

-- name: admin_competence_delete_links
-- Delete every link to a competence and count them (they would go by cascade anyway).
WITH deleted AS (
    DELETE FROM links WHERE competence_id = %(id)s RETURNING id
)
SELECT count(*) AS n FROM deleted;

-- name: admin_competence_delete
-- Delete a node (its grants and links are gone already).
DELETE FROM competences WHERE id = %(id)s RETURNING id;

-- name: admin_competence_usage
-- What deleting a competence would take with it: its grants (every period) and its links.
SELECT (SELECT count(*) FROM grants WHERE competence_id = %(id)s) AS grants,
       (SELECT count(*) FROM links WHERE competence_id = %(id)s) AS links;

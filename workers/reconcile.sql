-- The catalog refresh and the reconciliation (workers/reconcile.py).

-- name: catalog_upsert_courses
-- Add or rename the courses the catalog lists; returns each with its current status.
INSERT INTO courses AS c (id, name, guide_type, last_seen_at)
SELECT * FROM unnest(%(ids)s::bigint[], %(names)s::text[], %(guide_types)s::int[],
                     %(seen)s::timestamptz[])
ON CONFLICT (tenant_id, id) DO UPDATE
SET name = excluded.name, guide_type = excluded.guide_type,
    last_seen_at = excluded.last_seen_at,
    updated_at = CASE WHEN (c.name, c.guide_type) IS DISTINCT FROM (excluded.name, excluded.guide_type)
                      THEN now() ELSE c.updated_at END
RETURNING c.id, c.name, c.guide_type, c.status,
          CASE WHEN isfinite(c.status_changed_at) THEN c.status_changed_at END AS status_changed_at;

-- name: catalog_missing_courses
-- Known courses the catalog no longer lists: published ones (they stopped being published or
-- were deleted) and linked unpublished ones (they may have been deleted since).
SELECT c.id, c.name, c.guide_type, c.status
  FROM courses c
 WHERE c.guide_type = ANY(%(guide_types)s::int[])
   AND c.id <> ALL(%(listed)s::bigint[])
   AND (c.status = 'published'
        OR (c.status = 'unpublished' AND EXISTS (SELECT 1 FROM links l WHERE l.course_id = c.id)))
 ORDER BY c.id;

-- name: reconcile_courses
-- Linked, published courses with their reconciliation cursor (NULL before the first run)
-- and the time they were first linked (a backfill covers everything before it).
SELECT c.id, c.name, c.guide_type, min(l.created_at) AS linked_at, jc.cursor
  FROM courses c
  JOIN links l ON l.course_id = c.id
  LEFT JOIN job_cursors jc ON jc.name = 'reconcile:' || c.id
 WHERE c.status = 'published'
 GROUP BY c.id, c.name, c.guide_type, jc.cursor
 ORDER BY c.id;

-- name: save_job_cursor
-- Remember where a periodic job got to.
INSERT INTO job_cursors (name, cursor) VALUES (%(name)s, %(cursor)s)
ON CONFLICT (tenant_id, name) DO UPDATE SET cursor = excluded.cursor, updated_at = now();

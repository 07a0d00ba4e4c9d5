-- seed-demo: the demo is seeded once, so that it never undoes what an admin changed since.

-- name: demo_take_seed_mark
-- Mark the database as seeded; no row back when it was marked before (or by a seed running
-- now: the second waits for the first's commit and then gets nothing).
INSERT INTO job_cursors (name, cursor) VALUES (%(name)s, %(cursor)s)
ON CONFLICT (tenant_id, name) DO NOTHING
RETURNING updated_at;

-- name: demo_seed_mark
-- When the database was seeded (no row: never).
SELECT updated_at, cursor FROM job_cursors WHERE name = %(name)s;

-- name: demo_holds_data
-- Whether the database holds employees, competences or links already (seeded before the mark
-- existed, or set up by hand): the demo is then not seeded into it.
SELECT EXISTS (SELECT 1 FROM employees) OR EXISTS (SELECT 1 FROM competences)
       OR EXISTS (SELECT 1 FROM links) AS holds;

-- name: demo_find_competence
-- seed-demo: a competence tree node by name and parent (so a second seed reuses it).
SELECT id FROM competences
 WHERE name = %(name)s AND kind = %(kind)s AND parent_id IS NOT DISTINCT FROM %(parent_id)s
 ORDER BY id LIMIT 1;

-- name: demo_upsert_course
-- seed-demo: a course the demo links (the catalog refresh keeps it current afterwards).
INSERT INTO courses (id, name, guide_type, last_seen_at)
VALUES (%(id)s, %(name)s, %(guide_type)s, now())
ON CONFLICT (tenant_id, id) DO NOTHING;

-- Dead letters: events the workers could not process, kept for ops and replay.

-- name: admin_dead_letters_pending_by_queue
-- The bound tenant's dead letters not replayed yet, per queue (its policy decides which rows).
SELECT queue, count(*) AS n FROM dead_letters WHERE replayed_at IS NULL GROUP BY queue;

-- name: dead_letters_pending_by_tenant
-- Dead letters not replayed yet, by tenant and queue, of the tenants named (`tenants`): one
-- statement for one tenant or all of them (migration 0016: counts only).
SELECT tenant_id, queue, n FROM state_dead_letters_pending(%(tenants)s::integer[]);

-- name: admin_dead_letters_take
-- Pending dead letters to replay (all, or the given ids), locked; a concurrent replay skips them.
SELECT id, tenant_id, queue, webhook_id, event_type, payload FROM dead_letters
 WHERE replayed_at IS NULL
   AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
 ORDER BY id
 FOR UPDATE SKIP LOCKED;

-- name: admin_dead_letters_mark_replayed
-- Note that dead letters were put back on their queue.
UPDATE dead_letters SET replayed_at = now() WHERE id = ANY(%(ids)s::bigint[]);

-- name: keep_bad_record
-- Keep a record of InfoCaption's API that could not be read or stored (a dead letter of no
-- queue: ops see it, nothing replays it); the same record of the same course, still pending,
-- is kept once.
INSERT INTO dead_letters (queue, event_type, payload, error)
SELECT %(queue)s, 'infocaption.result', %(payload)s, %(error)s
 WHERE NOT EXISTS (SELECT 1 FROM dead_letters d
                    WHERE d.queue = %(queue)s AND d.replayed_at IS NULL
                      AND d.payload -> 'course_id' = to_jsonb(%(course_id)s::bigint)
                      AND d.payload ->> 'record' = %(record)s);

-- name: insert_dead_letter
-- Keep an event a worker could not process, with its error, for replay.
INSERT INTO dead_letters (queue, webhook_id, event_type, payload, error)
VALUES (%(queue)s, %(webhook_id)s, %(event_type)s, %(payload)s, %(error)s)
RETURNING id;

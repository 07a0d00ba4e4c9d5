-- The outbox: work that must start after a transaction commits.

-- name: outbox_insert
-- Write work to start once the current transaction commits.
INSERT INTO outbox (topic, payload) VALUES (%(topic)s, %(payload)s) RETURNING id;

-- name: outbox_pending
-- Oldest unpublished work first; SKIP LOCKED lets a second relay pass over busy rows.
SELECT id, topic, payload, tenant_id FROM outbox
 WHERE published_at IS NULL
 ORDER BY id
 LIMIT %(limit)s
 FOR UPDATE SKIP LOCKED;

-- name: outbox_mark_published
-- Mark one outbox row as handed to the broker.
UPDATE outbox SET published_at = now() WHERE id = %(id)s;

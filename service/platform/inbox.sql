-- The embedded queue (no BROKER_URL): messages are rows of queue_messages (migration 0003).
-- docs/RELIABILITY.md, "The embedded queue", says why this keeps rule 9 (docs/rules.md).

-- name: inbox_put
-- Enqueue one message; its consumers are woken when the transaction commits (NOTIFY is sent
-- at commit, never for a rolled-back insert).
WITH m AS (
    INSERT INTO queue_messages (queue, body) VALUES (%(queue)s, %(body)s) RETURNING queue
)
SELECT pg_notify('competence_bridge_queue', queue) FROM m;

-- name: inbox_listen
LISTEN competence_bridge_queue;

-- name: inbox_fetch
-- Hand a consumer the oldest messages of its queue that it does not hold yet (`held`), and
-- count the delivery. Nothing is taken here: a message leaves the queue only in the
-- transaction that applies it (inbox_claim).
UPDATE queue_messages m
   SET deliveries = m.deliveries + 1
  FROM (SELECT id FROM queue_messages
         WHERE queue = %(queue)s AND NOT (id = ANY(%(held)s::bigint[]))
         ORDER BY id
         LIMIT %(limit)s) next
 WHERE m.id = next.id
RETURNING m.id, m.body, m.deliveries;

-- name: inbox_claim
-- Take messages for good, inside the transaction that applies them. A message another worker
-- took meanwhile is not returned (this statement waits for that worker's transaction, and
-- finds the row gone once it committed, or takes it once it rolled back).
DELETE FROM queue_messages WHERE id = ANY(%(ids)s::bigint[]) RETURNING id;

-- name: inbox_dead_letter
-- Move messages that were delivered too often without any worker committing them (each time
-- the worker stopped before its commit) to the dead letters, as RabbitMQ's delivery limit does.
WITH gone AS (
    DELETE FROM queue_messages WHERE id = ANY(%(ids)s::bigint[]) RETURNING queue, body
)
INSERT INTO dead_letters (queue, webhook_id, event_type, payload, error)
SELECT queue,
       CASE WHEN jsonb_typeof(body) = 'object' THEN left(body->>'webhook_id', 200) END,
       CASE WHEN jsonb_typeof(body) = 'object' THEN left(body->>'type', 200) END,
       body, %(error)s
  FROM gone
RETURNING id;

-- name: inbox_depths
-- Messages waiting per queue (including those handed to a worker and not yet applied).
SELECT queue, count(*) AS depth
  FROM queue_messages
 WHERE queue = ANY(%(queues)s::text[])
 GROUP BY queue;

-- name: inbox_consumers
-- Consumers per queue: every consumer holds one session named after its queue.
SELECT application_name AS name, count(*) AS consumers
  FROM pg_stat_activity
 WHERE datname = current_database() AND application_name = ANY(%(names)s::text[])
 GROUP BY application_name;

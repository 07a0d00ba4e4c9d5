-- The embedded queue, used when BROKER_URL is unset (docs/RELIABILITY.md, "The embedded
-- queue"). A message is a row: the web process inserts it before answering 202 (committed, so
-- durable), and a worker deletes it in the same transaction that applies it, so a message is
-- applied exactly once and nothing applied is ever delivered again, whatever process is killed.
CREATE TABLE queue_messages (
    id          bigserial PRIMARY KEY,
    queue       text NOT NULL,               -- the queue's name, e.g. competence_bridge.events
    body        jsonb NOT NULL,
    deliveries  integer NOT NULL DEFAULT 0,  -- handed to a worker this many times
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_messages_queue_id_idx ON queue_messages (queue, id);

-- Queries of the webhook endpoint.

-- name: insert_rejected_webhook
-- Keep a rejected webhook for ops, with the reason and field errors.
INSERT INTO rejected_webhooks (webhook_id, status, reason, errors, headers, body)
VALUES (%(webhook_id)s, %(status)s, %(reason)s, %(errors)s, %(headers)s, %(body)s);

-- name: rejected_webhooks_count
-- Rejected webhooks kept for ops, optionally of one status.
SELECT count(*) AS total FROM rejected_webhooks
 WHERE (%(status)s::integer IS NULL OR status = %(status)s);

-- name: rejected_webhooks_page
-- One page of rejected webhooks, newest first.
SELECT id, received_at, webhook_id, status, reason, errors, headers, body
  FROM rejected_webhooks
 WHERE (%(status)s::integer IS NULL OR status = %(status)s)
 ORDER BY id DESC
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: prune_rejected_webhooks
-- Delete up to `limit` rejected webhooks received before the retention window; a few
-- thousand at a time so that no delete holds its locks for long.
WITH old AS (
    SELECT id FROM rejected_webhooks
     WHERE received_at < now() - make_interval(days => %(days)s)
     ORDER BY received_at
     LIMIT %(limit)s
)
DELETE FROM rejected_webhooks r USING old WHERE r.id = old.id;

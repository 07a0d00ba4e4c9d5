-- Queries of the webhook endpoint.

-- name: insert_rejected_webhook
-- Keep a rejected webhook for ops, with the reason and field errors.
INSERT INTO rejected_webhooks (webhook_id, status, reason, errors, headers, body)
VALUES (%(webhook_id)s, %(status)s, %(reason)s, %(errors)s, %(headers)s, %(body)s);

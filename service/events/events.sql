-- Outgoing events (docs/events.md): subscriptions, the outbox of events and their deliveries,
-- expiry notices and the reminder mails' content.

-- name: subscription_insert
-- A new subscriber; its secret arrives encrypted (never stored in the clear).
INSERT INTO subscriptions (url, events, description, secret_encrypted, created_by)
VALUES (%(url)s, %(events)s, %(description)s, %(secret_encrypted)s, %(created_by)s)
RETURNING id, url, events, description, created_at, created_by;

-- name: subscriptions_count
-- How many subscriptions there are (the list's page metadata).
SELECT count(*) AS total FROM subscriptions;

-- name: subscriptions_page
-- One page of subscriptions, with how their deliveries stand (never the secret).
SELECT s.id, s.url, s.events, s.description, s.created_at, s.created_by,
       coalesce(d.pending, 0) AS pending, coalesce(d.failed, 0) AS failed,
       coalesce(d.delivered, 0) AS delivered
  FROM subscriptions s
  LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE x.state = 'pending') AS pending,
               count(*) FILTER (WHERE x.state = 'failed') AS failed,
               count(*) FILTER (WHERE x.state = 'delivered') AS delivered
          FROM event_deliveries x WHERE x.subscription_id = s.id) d ON true
 ORDER BY s.id
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: subscription_get
-- One subscription (never the secret), for the audit log and the delivery log's owner check.
SELECT id, url, events, description, created_at, created_by FROM subscriptions WHERE id = %(id)s;

-- name: subscription_delete
-- Remove a subscriber; its deliveries go with it (ON DELETE CASCADE).
DELETE FROM subscriptions WHERE id = %(id)s
RETURNING id, url, events, description, created_at, created_by;

-- name: subscription_deliveries_count
-- How many deliveries one subscription has (optionally in one state).
SELECT count(*) AS total FROM event_deliveries d
 WHERE d.subscription_id = %(subscription_id)s
   AND (%(state)s::text IS NULL OR d.state = %(state)s);

-- name: subscription_deliveries_page
-- The delivery log of one subscription, newest first.
-- include: delivery_row
 WHERE d.subscription_id = %(subscription_id)s
   AND (%(state)s::text IS NULL OR d.state = %(state)s)
 ORDER BY d.id DESC
 LIMIT %(limit)s OFFSET %(offset)s;

-- name: delivery_row
-- A delivery as the log shows it (a fragment the log and the re-send share).
SELECT d.id, d.event_id, e.webhook_id, e.type, d.grant_id, d.state, d.attempts,
       d.next_attempt_at, d.last_attempt_at, d.last_status, d.last_error, d.delivered_at,
       d.created_at
  FROM event_deliveries d JOIN outgoing_events e ON e.id = d.event_id

-- name: delivery_resend
-- Put a delivered or failed delivery back in line, its retry horizon counted from now.
UPDATE event_deliveries
   SET state = 'pending', next_attempt_at = %(now)s, retry_since = NULL, delivered_at = NULL
 WHERE id = %(id)s AND subscription_id = %(subscription_id)s AND state <> 'pending'
RETURNING id;

-- name: delivery_get
-- One delivery of one subscription.
-- include: delivery_row
 WHERE d.id = %(id)s AND d.subscription_id = %(subscription_id)s;

-- name: events_emit_competence_deleted
-- grant.deleted for every grant of a competence about to be deleted (rule 5), in one statement;
-- nothing when no subscription wants the type.
WITH emitted AS (
    INSERT INTO outgoing_events (type, grant_id, body)
    SELECT 'grant.deleted', g.id,
           grant_event_body('grant.deleted', now(), g.id, g.employee_id, g.competence_id,
                            g.valid_from, g.valid_to, g.revoked_at, g.revoked_reason,
                            g.course_id, g.result_id, g.source)
      FROM grants g
     WHERE g.competence_id = %(competence_id)s
       AND EXISTS (SELECT 1 FROM subscriptions s WHERE 'grant.deleted' = ANY (s.events))
     ORDER BY g.id
    RETURNING id, type, grant_id
)
INSERT INTO event_deliveries (event_id, subscription_id, channel, grant_id)
SELECT e.id, s.id, 'webhook', e.grant_id
  FROM emitted e JOIN subscriptions s ON e.type = ANY (s.events)
 ORDER BY e.id, s.id;

-- name: notices_state
-- When the expiry job last ran (no row: never), locked until this run commits.
SELECT last_day, last_at FROM grant_notices_state FOR UPDATE;

-- name: notices_now
-- The moment this run reads the grants (the next run of the day reads what changed since).
SELECT now() AS now;

-- name: notices_state_save
-- Remember this run of the expiry job.
INSERT INTO grant_notices_state (last_day, last_at) VALUES (%(today)s, %(at)s)
ON CONFLICT (tenant_id, one) DO UPDATE SET last_day = excluded.last_day, last_at = excluded.last_at;

-- name: notices_due
-- Record the expiry notices due today and emit their events and reminder mails, in one
-- statement (docs/events.md, "Expiry notices"). grant.expiring: a grant that has not ended,
-- is not revoked and is not followed by a later grant gets the notice of the tightest lead
-- time it has reached, once. grant.expired: a grant that ended since the job's previous day
-- (after `prev_day`), was not revoked and existed before it ended, once. `changed_after` NULL:
-- every grant inside a lead time (the day's first run, which also catches up after downtime);
-- otherwise only the grants changed since (a run later the same day).
WITH leads AS (
    SELECT unnest(%(leads)s::integer[]) AS lead_days
), due AS (
    SELECT g.id AS grant_id, 'expiring'::text AS kind, l.lead_days, g.valid_to - l.lead_days AS due_on
      FROM grants g
      CROSS JOIN LATERAL (SELECT min(x.lead_days) AS lead_days FROM leads x
                           WHERE g.valid_to - x.lead_days <= %(today)s) l
     WHERE g.valid_to IS NOT NULL AND g.revoked_at IS NULL
       AND g.valid_to >= %(today)s
       AND g.valid_to <= %(today)s + (SELECT max(x.lead_days) FROM leads x)
       AND (%(changed_after)s::timestamptz IS NULL OR g.updated_at >= %(changed_after)s)
       AND g.valid_from <= %(today)s
       AND l.lead_days IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM grants later
                        WHERE later.employee_id = g.employee_id
                          AND later.competence_id = g.competence_id
                          AND later.id <> g.id AND later.valid_from > g.valid_from
                          AND later.revoked_at IS NULL)
    UNION ALL
    SELECT g.id, 'expired', 0, g.valid_to + 1
      FROM grants g
     WHERE g.valid_to IS NOT NULL AND g.revoked_at IS NULL
       AND g.valid_to < %(today)s
       AND g.valid_to >= %(prev_day)s
       AND %(changed_after)s::timestamptz IS NULL
       AND event_day(g.created_at) <= g.valid_to
), noticed AS (
    INSERT INTO grant_notices (grant_id, kind, lead_days, due_on)
    SELECT grant_id, kind, lead_days, due_on FROM due
    ON CONFLICT (grant_id, kind, lead_days) DO NOTHING
    RETURNING grant_id, kind, lead_days
), emitted AS (
    INSERT INTO outgoing_events (type, grant_id, body)
    SELECT 'grant.' || n.kind, g.id,
           CASE WHEN n.kind = 'expiring' THEN jsonb_set(b.body, '{data,lead_days}', to_jsonb(n.lead_days))
                ELSE b.body END
      FROM noticed n JOIN grants g ON g.id = n.grant_id
     CROSS JOIN LATERAL (
           SELECT grant_event_body('grant.' || n.kind, now(), g.id, g.employee_id, g.competence_id,
                                   g.valid_from, g.valid_to, g.revoked_at, g.revoked_reason,
                                   g.course_id, g.result_id, g.source) AS body) b
     WHERE EXISTS (SELECT 1 FROM subscriptions s WHERE 'grant.' || n.kind = ANY (s.events))
        OR (n.kind = 'expiring' AND %(mail)s)
     ORDER BY g.id
    RETURNING id, type, grant_id, body
), webhooks AS (
    INSERT INTO event_deliveries (event_id, subscription_id, channel, grant_id)
    SELECT e.id, s.id, 'webhook', e.grant_id
      FROM emitted e JOIN subscriptions s ON e.type = ANY (s.events)
     ORDER BY e.id, s.id
    RETURNING id
), mails AS (
    INSERT INTO event_deliveries (event_id, channel, grant_id)
    SELECT e.id, 'mail', e.grant_id
      FROM emitted e
     WHERE %(mail)s AND e.type = 'grant.expiring'
       AND coalesce(btrim(e.body #>> '{data,grant,employee_email}'), '') <> ''
     ORDER BY e.id
    RETURNING id
)
SELECT (SELECT count(*) FROM noticed) AS noticed, (SELECT count(*) FROM emitted) AS events,
       (SELECT count(*) FROM webhooks) AS webhooks, (SELECT count(*) FROM mails) AS mails;

-- name: delivery_claim
-- The next delivery that is due, locked for this sender (another skips it), and only if no
-- earlier delivery of the same grant to the same receiver is still pending: in order per grant.
SELECT d.id, d.event_id, d.subscription_id, d.channel, d.grant_id, d.attempts, d.retry_since,
       e.webhook_id, e.type, e.body, s.url, s.secret_encrypted
  FROM event_deliveries d
  JOIN outgoing_events e ON e.id = d.event_id
  LEFT JOIN subscriptions s ON s.id = d.subscription_id
 WHERE d.state = 'pending' AND d.next_attempt_at <= %(now)s
   AND NOT EXISTS (SELECT 1 FROM event_deliveries p
                    WHERE p.grant_id = d.grant_id AND p.state = 'pending' AND p.id < d.id
                      AND p.channel = d.channel
                      AND (p.subscription_id = d.subscription_id
                           OR (p.subscription_id IS NULL AND d.subscription_id IS NULL)))
 ORDER BY d.next_attempt_at, d.id
 LIMIT 1
   FOR UPDATE OF d SKIP LOCKED;

-- name: delivery_delivered
-- A 2xx answer (or a mail the server took): done.
UPDATE event_deliveries
   SET state = 'delivered', attempts = attempts + 1, last_attempt_at = %(now)s,
       last_status = %(status)s, last_error = NULL, delivered_at = %(now)s,
       retry_since = coalesce(retry_since, %(now)s)
 WHERE id = %(id)s;

-- name: delivery_retry
-- Anything else: try again at next_attempt_at, or fail for good past the retry horizon (24 h
-- from the first attempt, so that a worker that was down does not shorten it).
UPDATE event_deliveries
   SET state = %(state)s, attempts = attempts + 1, last_attempt_at = %(now)s,
       last_status = %(status)s, last_error = %(error)s, next_attempt_at = %(next_attempt_at)s,
       retry_since = coalesce(retry_since, %(now)s)
 WHERE id = %(id)s;


-- name: mail_recipient
-- Who a reminder goes to, as the employee is now (an email corrected since is used).
SELECT e.email, e.first_name, e.last_name FROM employees e WHERE e.id = %(employee_id)s;

-- name: mail_renewing_courses
-- The published courses linked to a competence: taking one renews it.
SELECT c.id, c.name FROM links l JOIN courses c ON c.id = l.course_id
 WHERE l.competence_id = %(competence_id)s AND c.status = 'published'
 ORDER BY c.name, c.id;

-- name: prune_delivered
-- Forget up to `limit` deliveries delivered more than `days` ago, and the events left with no
-- delivery (docs/events.md, "Delivery"); failed and pending ones stay.
WITH old AS (
    SELECT id FROM event_deliveries
     WHERE state = 'delivered' AND delivered_at < %(now)s - make_interval(days => %(days)s)
     ORDER BY delivered_at
     LIMIT %(limit)s
), gone AS (
    DELETE FROM event_deliveries d USING old WHERE d.id = old.id
    RETURNING d.event_id
), orphans AS (
    DELETE FROM outgoing_events e
     WHERE e.id IN (SELECT event_id FROM gone)
       AND NOT EXISTS (SELECT 1 FROM event_deliveries x
                        WHERE x.event_id = e.id AND x.id NOT IN (SELECT id FROM old))
    RETURNING e.id
)
SELECT (SELECT count(*) FROM gone) AS deliveries, (SELECT count(*) FROM orphans) AS events;

-- name: delivery_due_tenants
-- The tenants with deliveries due (migration 0014): the loop visits each in turn.
SELECT t AS tenant_id FROM tenants_with_due_deliveries(%(now)s) t ORDER BY t;

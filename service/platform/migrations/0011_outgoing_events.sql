-- Outgoing events (docs/events.md): subscriptions, the event outbox with its deliveries, and
-- the ledger of expiry notices. Events are written in the transaction of the change that
-- causes them; the delivery loop of the worker sends them (docs/processes.md, "Processes").

-- A subscriber: where to POST which event types, and the secret that signs them (encrypted
-- with ENCRYPTION_KEY; shown once, at creation).
CREATE TABLE subscriptions (
    id               bigserial PRIMARY KEY,
    url              text NOT NULL,
    events           text[] NOT NULL CHECK (cardinality(events) > 0),
    description      text NOT NULL DEFAULT '',
    secret_encrypted text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text NOT NULL
);
CREATE INDEX subscriptions_events_idx ON subscriptions USING gin (events);

-- One outgoing event: its body as sent, and the webhook-id every retry and re-send of it carries
-- (named apart from the incoming webhook events of the events queue).
CREATE TABLE outgoing_events (
    id         bigserial PRIMARY KEY,
    webhook_id text NOT NULL DEFAULT ('msg_' || replace(gen_random_uuid()::text, '-', '')),
    type       text NOT NULL,
    grant_id   bigint NOT NULL,             -- no FK: a deleted grant's events stay in the log
    body       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT outgoing_events_webhook_id_key UNIQUE (webhook_id)
);

-- One event to one receiver: a subscription (channel webhook) or the employee's mailbox
-- (channel mail, no subscription). Pending until delivered or failed for good.
CREATE TABLE event_deliveries (
    id              bigserial PRIMARY KEY,
    event_id        bigint NOT NULL REFERENCES outgoing_events (id) ON DELETE CASCADE,
    subscription_id bigint REFERENCES subscriptions (id) ON DELETE CASCADE,
    channel         text NOT NULL CHECK (channel IN ('webhook', 'mail')),
    grant_id        bigint NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    retry_since     timestamptz,           -- the first attempt (since a re-send): the retry horizon counts from it
    last_attempt_at timestamptz,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((channel = 'webhook') = (subscription_id IS NOT NULL))
);
CREATE INDEX event_deliveries_due_idx ON event_deliveries (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX event_deliveries_pending_grant_idx ON event_deliveries (grant_id, id) WHERE state = 'pending';
CREATE INDEX event_deliveries_subscription_idx ON event_deliveries (subscription_id, id);
CREATE INDEX event_deliveries_failed_idx ON event_deliveries (id) WHERE state = 'failed';
CREATE INDEX event_deliveries_delivered_idx ON event_deliveries (delivered_at) WHERE state = 'delivered';
CREATE INDEX event_deliveries_event_idx ON event_deliveries (event_id);

-- Which expiry notices a grant has had: one row per grant, kind and lead time, so that each is
-- noticed exactly once however often (or late) the scheduler runs.
CREATE TABLE grant_notices (
    grant_id   bigint NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('expiring', 'expired')),
    lead_days  integer NOT NULL,            -- 0 for expired
    due_on     date NOT NULL,
    noticed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (grant_id, kind, lead_days)
);

-- When the expiry job last ran: the day (its first run of a day reads every grant inside a lead
-- time; later runs that day only the grants changed since) and the moment.
CREATE TABLE grant_notices_state (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_day date NOT NULL,
    last_at  timestamptz NOT NULL
);

-- The expiry job reads grants by their end, and (between its daily runs) by their last change.
CREATE INDEX grants_valid_to_idx ON grants (valid_to) WHERE valid_to IS NOT NULL AND revoked_at IS NULL;
CREATE INDEX grants_updated_at_idx ON grants (updated_at);

-- The organisation's day at a moment: TIME_ZONE, which every pooled connection sets as
-- competence_bridge.time_zone (service/platform/db.py); Europe/Stockholm when unset.
CREATE FUNCTION event_day(at timestamptz) RETURNS date
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT (event_day.at AT TIME ZONE coalesce(nullif(current_setting('competence_bridge.time_zone', true), ''),
                                              'Europe/Stockholm'))::date
    $$;

-- The body of a grant event (docs/events.md, "The body"): the grant as it is at the event, with
-- the employee's email, the competence's name and its status (grant_status, migration 0008).
CREATE FUNCTION grant_event_body(type text, at timestamptz, grant_id bigint, employee_id bigint,
                                 competence_id bigint, valid_from date, valid_to date,
                                 revoked_at timestamptz, revoked_reason text, course_id bigint,
                                 result_id text, source text)
    RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$
    SELECT jsonb_build_object(
        'type', grant_event_body.type,
        'timestamp', to_char(grant_event_body.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'data', jsonb_build_object('grant', jsonb_build_object(
            'id', grant_event_body.grant_id,
            'employee_id', grant_event_body.employee_id,
            'employee_email', (SELECT e.email FROM employees e WHERE e.id = grant_event_body.employee_id),
            'competence_id', grant_event_body.competence_id,
            'competence_name', (SELECT c.name FROM competences c WHERE c.id = grant_event_body.competence_id),
            'valid_from', grant_event_body.valid_from,
            'valid_to', grant_event_body.valid_to,
            'status', grant_status(grant_event_body.valid_from, grant_event_body.valid_to,
                                   grant_event_body.revoked_at, event_day(grant_event_body.at)),
            'course_id', grant_event_body.course_id,
            'result_id', grant_event_body.result_id,
            'source', grant_event_body.source)
            || CASE WHEN grant_event_body.revoked_at IS NULL THEN '{}'::jsonb
                    ELSE jsonb_build_object(
                        'revoked_at', to_char(grant_event_body.revoked_at AT TIME ZONE 'UTC',
                                              'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                        'revoked_reason', grant_event_body.revoked_reason) END))
    $$;

-- grant.created and grant.renewed for every grant inserted, whichever path inserted it
-- (webhook, backfill, reconciliation, employee update): one set-based statement per INSERT
-- statement, and nothing at all while no subscription wants either type (docs/events.md,
-- "Types"). Renewed: the employee held an earlier grant of the competence that was not revoked.
CREATE FUNCTION grants_emit_inserted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM subscriptions s
                    WHERE s.events && ARRAY['grant.created', 'grant.renewed']) THEN
        RETURN NULL;
    END IF;
    WITH typed AS (
        SELECT n.*,
               CASE WHEN EXISTS (SELECT 1 FROM grants p
                                  WHERE p.employee_id = n.employee_id
                                    AND p.competence_id = n.competence_id
                                    AND p.id <> n.id AND p.valid_from < n.valid_from
                                    AND p.revoked_at IS NULL)
                    THEN 'grant.renewed' ELSE 'grant.created' END AS event_type
          FROM new_grants n
    ), emitted AS (
        INSERT INTO outgoing_events (type, grant_id, body)
        SELECT t.event_type, t.id,
               grant_event_body(t.event_type, now(), t.id, t.employee_id, t.competence_id,
                                t.valid_from, t.valid_to, t.revoked_at, t.revoked_reason,
                                t.course_id, t.result_id, t.source)
          FROM typed t
         WHERE t.revoked_at IS NULL  -- a revoked period recorded as history is no news
           AND EXISTS (SELECT 1 FROM subscriptions s WHERE t.event_type = ANY (s.events))
         ORDER BY t.id
        RETURNING id, type, grant_id
    )
    INSERT INTO event_deliveries (event_id, subscription_id, channel, grant_id)
    SELECT e.id, s.id, 'webhook', e.grant_id
      FROM emitted e JOIN subscriptions s ON e.type = ANY (s.events)
     ORDER BY e.id, s.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER grants_emit_inserted AFTER INSERT ON grants
    REFERENCING NEW TABLE AS new_grants
    FOR EACH STATEMENT EXECUTE FUNCTION grants_emit_inserted();

-- grant.revoked for a grant whose revoked_at is set (a revocation that keeps the row, as grant
-- periods do), and grant.renewed for a grant renewed in place (its valid_to moved on by a later
-- pass, as the grant step did before grant periods): a statement-level trigger comparing the
-- old and new rows. Nothing while no subscription wants either type.
CREATE FUNCTION grants_emit_updated() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM subscriptions s
                    WHERE s.events && ARRAY['grant.renewed', 'grant.revoked']) THEN
        RETURN NULL;
    END IF;
    WITH changed AS (
        SELECT n.*,
               CASE WHEN o.revoked_at IS NULL AND n.revoked_at IS NOT NULL THEN 'grant.revoked'
                    WHEN n.revoked_at IS NULL AND n.valid_to IS DISTINCT FROM o.valid_to
                    THEN 'grant.renewed' END AS event_type
          FROM new_grants n JOIN old_grants o ON o.id = n.id
    ), emitted AS (
        INSERT INTO outgoing_events (type, grant_id, body)
        SELECT c.event_type, c.id,
               grant_event_body(c.event_type, now(), c.id, c.employee_id, c.competence_id,
                                c.valid_from, c.valid_to, c.revoked_at, c.revoked_reason,
                                c.course_id, c.result_id, c.source)
          FROM changed c
         WHERE c.event_type IS NOT NULL
           AND EXISTS (SELECT 1 FROM subscriptions s WHERE c.event_type = ANY (s.events))
         ORDER BY c.id
        RETURNING id, type, grant_id
    )
    INSERT INTO event_deliveries (event_id, subscription_id, channel, grant_id)
    SELECT e.id, s.id, 'webhook', e.grant_id
      FROM emitted e JOIN subscriptions s ON e.type = ANY (s.events)
     ORDER BY e.id, s.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER grants_emit_updated AFTER UPDATE ON grants
    REFERENCING OLD TABLE AS old_grants NEW TABLE AS new_grants
    FOR EACH STATEMENT EXECUTE FUNCTION grants_emit_updated();

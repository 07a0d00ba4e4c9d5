-- What ops watch, read for many tenants in one statement each (docs/tenants.md, "Figures of
-- every tenant"): the metrics scrape, the platform's ops endpoint and queue overview ran the
-- same statements once per tenant, bound to it, which grows with the tenants.
--
-- Each function looks across tenants, so it is SECURITY DEFINER (the owner's policy `owner_all`
-- shows it every row, as for tenants_with_due_deliveries in migration 0014) and answers only
-- what carries no personal data: tenant ids, counts, row ids, times, queues, event types,
-- error kinds and the reasons of rejected webhooks the platform's endpoint shows (never an
-- email, a payload, a body, headers or field errors).
-- The caller names the tenants (`p_tenants`): the active ones for the gauges, every one for the
-- platform's views. A tenant's own views read under its own policy instead.

CREATE FUNCTION state_results_by_status(p_tenants integer[])
RETURNS TABLE (tenant_id integer, status text, n bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT r.tenant_id, r.status, count(*)
      FROM results r
     WHERE r.tenant_id = ANY (p_tenants)
     GROUP BY r.tenant_id, r.status
$$;

-- Grants not revoked (a revoked grant stays as a row of history: docs/rules.md, rule 5).
CREATE FUNCTION state_grants_by_source(p_tenants integer[])
RETURNS TABLE (tenant_id integer, source text, n bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT g.tenant_id, g.source, count(*)
      FROM grants g
     WHERE g.revoked_at IS NULL AND g.tenant_id = ANY (p_tenants)
     GROUP BY g.tenant_id, g.source
$$;

-- How many unmatched results and distinct emails, never the emails (read through the partial
-- index results_unmatched_idx).
CREATE FUNCTION state_unmatched(p_tenants integer[])
RETURNS TABLE (tenant_id integer, results bigint, emails bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT r.tenant_id, count(*), count(DISTINCT r.email_normalized)
      FROM results r
     WHERE r.status = 'unmatched' AND r.tenant_id = ANY (p_tenants)
     GROUP BY r.tenant_id
$$;

-- Dead letters not replayed yet, by queue (the partial index dead_letters_pending_idx).
CREATE FUNCTION state_dead_letters_pending(p_tenants integer[])
RETURNS TABLE (tenant_id integer, queue text, n bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT d.tenant_id, d.queue, count(*)
      FROM dead_letters d
     WHERE d.replayed_at IS NULL AND d.tenant_id = ANY (p_tenants)
     GROUP BY d.tenant_id, d.queue
$$;

CREATE FUNCTION state_backfill_links_by_state(p_tenants integer[])
RETURNS TABLE (tenant_id integer, state text, n bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT l.tenant_id, l.backfill_state, count(*)
      FROM links l
     WHERE l.tenant_id = ANY (p_tenants)
     GROUP BY l.tenant_id, l.backfill_state
$$;

-- Links whose backfill is not done, oldest first, at most `p_limit` of each tenant (one series
-- or one progress bar each): ids and counters only, never the checkpoint or the error.
CREATE FUNCTION state_backfills_unfinished(p_tenants integer[], p_limit integer)
RETURNS TABLE (tenant_id integer, id bigint, course_id bigint, competence_id bigint, state text,
               total integer, processed integer, granted integer, already_held integer,
               not_passed integer, unmatched integer, errors integer, started_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT u.tenant_id, u.id, u.course_id, u.competence_id, u.backfill_state,
           u.backfill_total, u.backfill_processed, u.backfill_granted, u.backfill_already_held,
           u.backfill_not_passed, u.backfill_unmatched, u.backfill_errors, u.backfill_started_at
      FROM (SELECT l.*, row_number() OVER (PARTITION BY l.tenant_id ORDER BY l.id) AS nth
              FROM links l
             WHERE l.backfill_state <> 'done' AND l.tenant_id = ANY (p_tenants)) u
     WHERE u.nth <= p_limit
     ORDER BY u.tenant_id, u.id
$$;

-- Outgoing event deliveries waiting and failed for good (docs/events.md, "Delivery"), each
-- read through its partial index, never the delivered history.
CREATE FUNCTION state_event_deliveries(p_tenants integer[])
RETURNS TABLE (tenant_id integer, state text, n bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT e.tenant_id, 'pending', count(*)
      FROM event_deliveries e
     WHERE e.state = 'pending' AND e.tenant_id = ANY (p_tenants)
     GROUP BY e.tenant_id
    UNION ALL
    SELECT e.tenant_id, 'failed', count(*)
      FROM event_deliveries e
     WHERE e.state = 'failed' AND e.tenant_id = ANY (p_tenants)
     GROUP BY e.tenant_id
$$;

-- The platform's ops endpoint (docs/tenants.md, "Platform tokens"): how many rejected webhooks
-- each tenant keeps, and the latest of each tenant's dead letters and rejected webhooks with
-- exactly the columns it shows (no payload, body, headers or field errors; of an error only
-- its kind, the part before the first colon).
CREATE FUNCTION state_rejected_webhooks_kept(p_tenants integer[])
RETURNS TABLE (tenant_id integer, n bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT w.tenant_id, count(*)
      FROM rejected_webhooks w
     WHERE w.tenant_id = ANY (p_tenants)
     GROUP BY w.tenant_id
$$;

CREATE FUNCTION state_latest_dead_letters(p_tenants integer[], p_limit integer)
RETURNS TABLE (tenant_id integer, id bigint, queue text, event_type text, error_kind text,
               failed_at timestamptz, replayed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT t.id, d.id, d.queue, d.event_type, split_part(d.error, ':', 1), d.failed_at,
           d.replayed_at
      FROM (SELECT DISTINCT unnest(p_tenants)) AS t (id)
     CROSS JOIN LATERAL (SELECT * FROM dead_letters x
                          WHERE x.tenant_id = t.id
                          ORDER BY x.id DESC
                          LIMIT p_limit) d
     ORDER BY t.id, d.id DESC
$$;

CREATE FUNCTION state_latest_rejected_webhooks(p_tenants integer[], p_limit integer)
RETURNS TABLE (tenant_id integer, id bigint, received_at timestamptz, status integer,
               reason text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT t.id, w.id, w.received_at, w.status, w.reason
      FROM (SELECT DISTINCT unnest(p_tenants)) AS t (id)
     CROSS JOIN LATERAL (SELECT x.id, x.received_at, x.status, x.reason
                           FROM rejected_webhooks x
                          WHERE x.tenant_id = t.id
                          ORDER BY x.id DESC
                          LIMIT p_limit) w
     ORDER BY t.id, w.id DESC
$$;

-- The latest rows of each tenant, and its count of rejected webhooks, read from an index of
-- the tenant's own rows instead of the whole table's newest rows filtered by tenant.
CREATE INDEX dead_letters_tenant_idx ON dead_letters (tenant_id, id);
CREATE INDEX rejected_webhooks_tenant_idx ON rejected_webhooks (tenant_id, id);

-- A function is executable by PUBLIC unless revoked: these only by the application's role
-- (the web process's gauges and platform endpoints) and the owner (`competence-bridge status`).
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'state_results_by_status(integer[])', 'state_grants_by_source(integer[])',
        'state_unmatched(integer[])', 'state_dead_letters_pending(integer[])',
        'state_backfill_links_by_state(integer[])',
        'state_backfills_unfinished(integer[], integer)', 'state_event_deliveries(integer[])',
        'state_rejected_webhooks_kept(integer[])',
        'state_latest_dead_letters(integer[], integer)',
        'state_latest_rejected_webhooks(integer[], integer)']
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO competence_bridge_app', f);
    END LOOP;
END $$;

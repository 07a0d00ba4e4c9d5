-- Tenants: the organisations of one deployment, each isolated by PostgreSQL itself
-- (docs/tenants.md). Every table of an organisation's data gets `tenant_id` and row-level
-- security; the application's queries run as the role competence_bridge_app, which is neither
-- superuser nor BYPASSRLS, and see only the rows of the tenant their connection was given
-- (`app.tenant_id`, set when a connection is taken from the pool: service/platform/db.py).
-- Migrations run as the owner.

CREATE TABLE tenants (
    id                   serial PRIMARY KEY,
    slug                 text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name                 text NOT NULL,
    infocaption_base_url text,           -- NULL for `default`: it is configured from the environment
    client_id            text,
    secrets              text,           -- Fernet token of {"client_secret", "webhook_secrets"}
    time_zone            text NOT NULL DEFAULT 'Europe/Stockholm',
    active               boolean NOT NULL DEFAULT true,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- The tenant `default` (service/platform/tenancy.py, DEFAULT_ID): a single-organisation
-- deployment's only tenant, configured from the environment; every row so far is its.
INSERT INTO tenants (id, slug, name) VALUES (1, 'default', 'default');
SELECT setval(pg_get_serial_sequence('tenants', 'id'), 1);

-- The tenant of the current transaction: NULL (no rows) when none was set.
CREATE FUNCTION app_tenant() RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::integer $$;

-- The tenant of a new row: the current one. Without one, `default`: only the owner writes
-- without a tenant (migrations, the tests' fixtures); the application role's rows must still
-- pass the policy's check, which refuses any tenant but the current one.
CREATE FUNCTION app_tenant_or_default() RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(app_tenant(), 1) $$;

-- Every table of an organisation's data: the column, the policy, ENABLE and FORCE.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'employees', 'competences', 'courses', 'course_status_changes', 'links', 'results',
        'grants', 'webhook_receipts', 'rejected_webhooks', 'dead_letters', 'api_tokens',
        'audit_log', 'job_cursors', 'subscriptions', 'outgoing_events', 'event_deliveries',
        'grant_notices', 'grant_notices_state', 'backfill_units', 'backfill_sweep_parts',
        'coverage_active_edges', 'coverage_latest_grants']
    LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN tenant_id integer NOT NULL DEFAULT 1', t);
        EXECUTE format('ALTER TABLE %I ALTER COLUMN tenant_id SET DEFAULT app_tenant_or_default()', t);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = app_tenant()) '
                       'WITH CHECK (tenant_id = app_tenant())', t);
        -- The owner (who migrates, and whose SECURITY DEFINER functions below look across
        -- tenants) sees every row, without being superuser or BYPASSRLS; it could turn the
        -- policies off anyway. The application's role is not the owner and never gets this.
        EXECUTE format('CREATE POLICY owner_all ON %I TO %I USING (true) WITH CHECK (true)',
                       t, current_user);
    END LOOP;
END $$;

-- The outbox is the platform's (one relay for all tenants); each row says whose work it is.
ALTER TABLE outbox ADD COLUMN tenant_id integer NOT NULL DEFAULT 1;
ALTER TABLE outbox ALTER COLUMN tenant_id SET DEFAULT app_tenant_or_default();

-- Uniqueness per tenant. InfoCaption's ids are unique per host only: a course and a result
-- are keyed by tenant and id, and what refers to a course refers to it by both.
ALTER TABLE links DROP CONSTRAINT links_course_id_fkey;
ALTER TABLE results DROP CONSTRAINT results_course_id_fkey;
ALTER TABLE course_status_changes DROP CONSTRAINT course_status_changes_course_id_fkey;
ALTER TABLE courses DROP CONSTRAINT courses_pkey;
ALTER TABLE courses ADD PRIMARY KEY (tenant_id, id);
ALTER TABLE links ADD CONSTRAINT links_course_fkey FOREIGN KEY (tenant_id, course_id)
    REFERENCES courses (tenant_id, id) ON DELETE RESTRICT;
ALTER TABLE results ADD CONSTRAINT results_course_fkey FOREIGN KEY (tenant_id, course_id)
    REFERENCES courses (tenant_id, id) ON DELETE RESTRICT;
ALTER TABLE course_status_changes ADD CONSTRAINT course_status_changes_course_fkey
    FOREIGN KEY (tenant_id, course_id) REFERENCES courses (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE course_status_changes DROP CONSTRAINT course_status_changes_once;
ALTER TABLE course_status_changes ADD CONSTRAINT course_status_changes_once
    UNIQUE (tenant_id, course_id, changed_at, status);

ALTER TABLE results DROP CONSTRAINT results_pkey;
ALTER TABLE results ADD PRIMARY KEY (tenant_id, id);

ALTER TABLE employees DROP CONSTRAINT employees_email_normalized_key;
ALTER TABLE employees ADD CONSTRAINT employees_email_normalized_key
    UNIQUE (tenant_id, email_normalized);

ALTER TABLE webhook_receipts DROP CONSTRAINT webhook_receipts_pkey;
ALTER TABLE webhook_receipts ADD PRIMARY KEY (tenant_id, webhook_id);

ALTER TABLE job_cursors DROP CONSTRAINT job_cursors_pkey;
ALTER TABLE job_cursors ADD PRIMARY KEY (tenant_id, name);

ALTER TABLE grant_notices_state DROP CONSTRAINT grant_notices_state_pkey;
ALTER TABLE grant_notices_state ADD PRIMARY KEY (tenant_id, one);

DROP INDEX api_tokens_active_name_idx;
CREATE UNIQUE INDEX api_tokens_active_name_idx ON api_tokens (tenant_id, name) WHERE revoked_at IS NULL;

-- What an administrator names by id must be the same tenant's: a link's competence and a
-- competence's parent are checked by the database with the tenant, not only by the policy.
ALTER TABLE competences ADD CONSTRAINT competences_tenant_id_key UNIQUE (tenant_id, id);
ALTER TABLE competences DROP CONSTRAINT competences_parent_id_fkey;
ALTER TABLE competences ADD CONSTRAINT competences_parent_fkey FOREIGN KEY (tenant_id, parent_id)
    REFERENCES competences (tenant_id, id) ON DELETE RESTRICT;
ALTER TABLE links DROP CONSTRAINT links_competence_id_fkey;
ALTER TABLE links ADD CONSTRAINT links_competence_fkey FOREIGN KEY (tenant_id, competence_id)
    REFERENCES competences (tenant_id, id) ON DELETE CASCADE;

-- Platform tokens (`create-token --platform`) belong to no tenant: no policy shows them, and
-- they are found only by their hash, below.
ALTER TABLE api_tokens ADD COLUMN platform boolean NOT NULL DEFAULT false;
ALTER TABLE api_tokens ALTER COLUMN tenant_id DROP NOT NULL;
ALTER TABLE api_tokens ADD CHECK (platform = (tenant_id IS NULL));
CREATE UNIQUE INDEX api_tokens_platform_name_idx ON api_tokens (name)
    WHERE platform AND revoked_at IS NULL;

-- A token is presented before its tenant is known: this finds an active token by its hash in
-- every tenant (knowing the token is the proof), notes its use and says whose it is.
CREATE FUNCTION token_by_hash(p_hash text)
RETURNS TABLE (id bigint, tenant_id integer, name text, permissions text[], platform boolean,
               time_zone text)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    UPDATE api_tokens t SET last_used_at = now()
     WHERE t.token_hash = p_hash AND t.revoked_at IS NULL
    RETURNING t.id, t.tenant_id, t.name, t.permissions, t.platform,
              (SELECT z.time_zone FROM tenants z WHERE z.id = t.tenant_id)
$$;

-- Views read with the reader's rights, so that the policies apply through them.
ALTER VIEW grant_revocations SET (security_invoker = true);

-- The application's role: no login, not superuser, no BYPASSRLS. Roles are the cluster's, so
-- it may exist already (another database of the same server).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'competence_bridge_app') THEN
        CREATE ROLE competence_bridge_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
    END IF;
    -- The user that migrates (and whose URL the processes use) may take the role (SET ROLE).
    IF NOT pg_has_role(current_user, 'competence_bridge_app', 'MEMBER') THEN
        EXECUTE format('GRANT competence_bridge_app TO %I', current_user);
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO competence_bridge_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO competence_bridge_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO competence_bridge_app;
REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM competence_bridge_app;
-- Tables and sequences of later migrations, made by the same owner.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO competence_bridge_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO competence_bridge_app;

-- The tenants that have deliveries due: the sender visits only those (an id is all this says
-- across tenants; what is sent is read under the tenant's own policy).
CREATE FUNCTION tenants_with_due_deliveries(p_now timestamptz) RETURNS SETOF integer
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT DISTINCT tenant_id FROM event_deliveries
     WHERE state = 'pending' AND next_attempt_at <= p_now
$$;

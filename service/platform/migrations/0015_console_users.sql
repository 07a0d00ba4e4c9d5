-- Console users (docs/console.md, "Sign-in"): people who sign in to the admin console with a
-- user name and a password (an argon2 hash); they hold the same permissions as API tokens.
-- A disabled user keeps the row (the audit log names them), and the name is free again.
CREATE TABLE console_users (
    id             bigserial PRIMARY KEY,
    username       text NOT NULL CHECK (length(username) BETWEEN 1 AND 200),
    password_hash  text NOT NULL,
    permissions    text[] NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);

CREATE UNIQUE INDEX console_users_active_username_idx
    ON console_users (lower(username)) WHERE disabled_at IS NULL;

-- Failed sign-ins, one row each, kept in the database so that every web process counts the
-- same ones (docs/console.md, "Rate limit"): by the user name tried and by the address.
CREATE TABLE console_sign_in_failures (
    id         bigserial PRIMARY KEY,
    username   text NOT NULL,
    address    text NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX console_sign_in_failures_username_idx ON console_sign_in_failures (lower(username), failed_at);
CREATE INDEX console_sign_in_failures_address_idx ON console_sign_in_failures (address, failed_at);

-- Console users are a tenant's (docs/tenants.md): the column, the policy, forced, as every
-- table of an organisation's data (migration 0014). A user name is the deployment's, unique
-- among active users of every tenant: the sign-in form has no field for the tenant.
ALTER TABLE console_users ADD COLUMN tenant_id integer NOT NULL DEFAULT app_tenant_or_default();
ALTER TABLE console_users ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON console_users USING (tenant_id = app_tenant())
    WITH CHECK (tenant_id = app_tenant());
DO $$
BEGIN
    EXECUTE format('CREATE POLICY owner_all ON console_users TO %I USING (true) WITH CHECK (true)',
                   current_user);
END $$;

-- A sign-in names a user before their tenant is known: this finds the active user of a name
-- in every tenant, with the hash to check the password against (knowing the password is the
-- proof; the caller binds the user's tenant from then on).
CREATE FUNCTION console_user_for_sign_in(p_username text)
RETURNS TABLE (id bigint, tenant_id integer, username text, password_hash text, permissions text[],
               time_zone text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT u.id, u.tenant_id, u.username, u.password_hash, u.permissions, t.time_zone
      FROM console_users u JOIN tenants t ON t.id = u.tenant_id
     WHERE lower(u.username) = lower(p_username) AND u.disabled_at IS NULL
$$;

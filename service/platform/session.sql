-- The session of every connection of the application (service/platform/db.py;
-- docs/tenants.md, "Isolation").

-- name: session_use_app_role
-- The application's role (migration 0014): not superuser, no BYPASSRLS.
SET ROLE competence_bridge_app;

-- name: session_bind_tenant
-- The tenant whose rows the session sees ('' for none: it sees nothing).
SELECT set_config('app.tenant_id', %(tenant)s, false);

-- name: session_bind_tenant_local
-- The tenant for the rest of the current transaction only (the session's comes back after it).
SELECT set_config('app.tenant_id', %(tenant)s, true);

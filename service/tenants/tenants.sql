-- Tenants (migration 0014; docs/tenants.md). The table is the platform's: no policy, read by
-- the web process to route webhooks and by the scheduler to visit each tenant.

-- name: tenant_columns
-- What a tenant's row says (its secrets stay encrypted until the code that uses them).
SELECT id, slug, name, infocaption_base_url, client_id, secrets, time_zone, active,
       created_at, updated_at
  FROM tenants

-- name: tenant_by_slug
-- include: tenant_columns
 WHERE slug = %(slug)s;

-- name: tenant_by_id
-- include: tenant_columns
 WHERE id = %(id)s;

-- name: tenant_list
-- include: tenant_columns
 ORDER BY id;

-- name: tenant_insert
-- A new tenant, with its secrets encrypted.
INSERT INTO tenants (slug, name, infocaption_base_url, client_id, secrets, time_zone)
VALUES (%(slug)s, %(name)s, %(infocaption_base_url)s, %(client_id)s, %(secrets)s, %(time_zone)s)
RETURNING id;

-- name: tenant_set_secrets
-- New secrets for a tenant (rotation).
UPDATE tenants SET secrets = %(secrets)s, updated_at = now() WHERE slug = %(slug)s RETURNING id;

-- name: tenant_set_active
-- Open or close a tenant's doors (an inactive tenant's webhooks are answered 404).
UPDATE tenants SET active = %(active)s, updated_at = now() WHERE slug = %(slug)s RETURNING id;

-- name: tenant_sync_default
-- The tenant `default` as the environment configures it (run by `migrate`).
UPDATE tenants SET time_zone = %(time_zone)s, updated_at = now()
 WHERE id = 1 AND time_zone IS DISTINCT FROM %(time_zone)s;

-- name: tenant_ids
-- Every tenant's id, for the views of every tenant's figures (nothing else of the row).
SELECT id FROM tenants ORDER BY id;

-- name: platform_dead_letters
-- The platform's ops endpoint reads the tenants named (`tenants`) in one statement each,
-- whatever their number (migration 0016). The latest `limit` dead letters of each tenant as
-- the platform may see them: no payload (it holds personal data), of the error only its kind.
SELECT tenant_id, id, queue, event_type, failed_at, replayed_at, error_kind
  FROM state_latest_dead_letters(%(tenants)s::integer[], %(limit)s);

-- name: platform_rejected_webhooks
-- The latest `limit` rejected webhooks of each tenant as the platform may see them: no body,
-- headers or field errors.
SELECT tenant_id, id, received_at, status, reason
  FROM state_latest_rejected_webhooks(%(tenants)s::integer[], %(limit)s);

-- name: platform_rejected_webhooks_count
-- How many rejected webhooks each tenant keeps.
SELECT tenant_id, n FROM state_rejected_webhooks_kept(%(tenants)s::integer[]);

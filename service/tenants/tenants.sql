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

-- name: platform_dead_letters
-- A tenant's dead letters as the platform may see them: no payload (it holds personal data).
SELECT id, queue, event_type, failed_at, replayed_at,
       split_part(error, ':', 1) AS error_kind
  FROM dead_letters
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: platform_dead_letters_pending
-- How many of a tenant's dead letters wait for replay.
SELECT count(*) AS n FROM dead_letters WHERE replayed_at IS NULL;

-- name: platform_rejected_webhooks
-- A tenant's rejected webhooks as the platform may see them: no body, headers or field errors.
SELECT id, received_at, status, reason FROM rejected_webhooks ORDER BY id DESC LIMIT %(limit)s;

-- name: platform_rejected_webhooks_count
-- How many rejected webhooks a tenant keeps.
SELECT count(*) AS n FROM rejected_webhooks;

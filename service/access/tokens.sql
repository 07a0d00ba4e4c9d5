-- API tokens: only hashes are stored.

-- name: insert_token
-- Store a token's hash with its permissions.
INSERT INTO api_tokens (name, token_hash, permissions)
VALUES (%(name)s, %(token_hash)s, %(permissions)s)
RETURNING id;

-- name: insert_platform_token
-- A platform token (migration 0014): no tenant's; the owner's connection writes it.
INSERT INTO api_tokens (tenant_id, platform, name, token_hash, permissions)
VALUES (NULL, true, %(name)s, %(token_hash)s, '{}')
RETURNING id;

-- name: revoke_token
-- Revoke the active token(s) of a name.
UPDATE api_tokens SET revoked_at = now()
WHERE name = %(name)s AND revoked_at IS NULL
RETURNING id;

-- name: lookup_token
-- Find an active token by hash in every tenant, and note that it was used (migration 0014:
-- a token is presented before its tenant is known).
SELECT id, tenant_id, name, permissions, platform, time_zone FROM token_by_hash(%(token_hash)s);

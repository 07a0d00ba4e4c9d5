-- API tokens: only hashes are stored.

-- name: insert_token
-- Store a token's hash with its permissions.
INSERT INTO api_tokens (name, token_hash, permissions)
VALUES (%(name)s, %(token_hash)s, %(permissions)s)
RETURNING id;

-- name: revoke_token
-- Revoke the active token(s) of a name.
UPDATE api_tokens SET revoked_at = now()
WHERE name = %(name)s AND revoked_at IS NULL
RETURNING id;

-- name: lookup_token
-- Find an active token by hash, and note that it was used.
UPDATE api_tokens SET last_used_at = now()
WHERE token_hash = %(token_hash)s AND revoked_at IS NULL
RETURNING id, name, permissions;

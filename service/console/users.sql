-- Console users and their failed sign-ins (docs/console.md, "Sign-in", "Rate limit").

-- name: console_user_insert
-- Add a console user; the unique index refuses an active user of the same name.
INSERT INTO console_users (username, password_hash, permissions)
VALUES (%(username)s, %(password_hash)s, %(permissions)s)
RETURNING id, username, permissions, created_at;

-- name: console_user_by_name
-- The active user of a name (case-insensitive) in every tenant, with the hash to check a
-- password against and the user's tenant (migration 0015: a sign-in names no tenant).
SELECT id, tenant_id, username, password_hash, permissions, time_zone
  FROM console_user_for_sign_in(%(username)s);

-- name: console_user_get
-- The active user of an id (every console request reads the permissions afresh).
SELECT id, username, permissions FROM console_users WHERE id = %(id)s AND disabled_at IS NULL;

-- name: console_user_rehash
-- Store a new hash of the same password (argon2's parameters changed); in the user's tenant,
-- bound for this transaction only (session_bind_tenant_local).
UPDATE console_users SET password_hash = %(password_hash)s WHERE id = %(id)s;

-- name: console_failures_recent
-- Failed sign-ins within the window, by the name tried or from the address, newest first:
-- how many, and when the oldest of the last `limit` happened (the refusal lasts from then).
SELECT count(*) AS n, min(failed_at) AS oldest FROM (
    SELECT failed_at FROM console_sign_in_failures
     WHERE failed_at > now() - make_interval(secs => %(window_s)s)
       AND (lower(username) = lower(%(username)s) OR address = %(address)s)
     ORDER BY failed_at DESC
     LIMIT %(limit)s
) recent;

-- name: console_failure_insert
-- Note one failed sign-in.
INSERT INTO console_sign_in_failures (username, address) VALUES (left(%(username)s, 200), %(address)s);

-- name: console_failures_clear
-- A successful sign-in forgets the failures of that name; old rows of any name go too.
DELETE FROM console_sign_in_failures
 WHERE lower(username) = lower(%(username)s)
    OR failed_at < now() - make_interval(secs => %(window_s)s);

-- The migration runner (service/platform/migrate.py): which numbered migrations are applied.

-- name: migrations_ensure_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_table_exists
SELECT to_regclass('schema_migrations') IS NOT NULL;

-- name: migrations_applied
SELECT version, checksum FROM schema_migrations;

-- name: migrations_record
INSERT INTO schema_migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s);

-- name: migrations_lock
-- One migrator at a time, however many releases start together.
SELECT pg_advisory_lock(%(key)s);

-- name: migrations_unlock
SELECT pg_advisory_unlock(%(key)s);

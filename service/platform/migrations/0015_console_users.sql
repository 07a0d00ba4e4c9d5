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

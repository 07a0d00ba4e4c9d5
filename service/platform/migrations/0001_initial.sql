-- The whole domain of docs/rules.md.
-- Times are timestamptz; dates (validity) are date in the organisation's TIME_ZONE.

-- Employees: identified for this integration by email (docs/rules.md, rule 2).
CREATE TABLE employees (
    id               bigserial PRIMARY KEY,
    email            text NOT NULL,
    email_normalized text NOT NULL,
    first_name       text,
    last_name        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT employees_email_normalized_key UNIQUE (email_normalized)
);

-- The competence tree: main group -> group -> competence (only leaves are granted).
CREATE TABLE competences (
    id                  bigserial PRIMARY KEY,
    parent_id           bigint REFERENCES competences (id) ON DELETE RESTRICT,
    name                text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('main_group', 'group', 'competence')),
    default_valid_days  integer CHECK (default_valid_days IS NULL OR default_valid_days > 0),
    renew_on_completion boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'main_group') = (parent_id IS NULL))
);
CREATE INDEX competences_parent_id_idx ON competences (parent_id);

-- The course catalog, keyed by InfoCaption's guide id.
CREATE TABLE courses (
    id                bigint PRIMARY KEY,
    name              text NOT NULL,
    guide_type        integer NOT NULL,
    status            text NOT NULL DEFAULT 'published'
                      CHECK (status IN ('published', 'unpublished', 'deleted')),
    status_changed_at timestamptz NOT NULL DEFAULT '-infinity',
    last_seen_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Every status change ever seen, so that "was the course published when this result was
-- completed?" is answered by time and not by the order events arrive in (docs/rules.md, rule 6).
CREATE TABLE course_status_changes (
    id         bigserial PRIMARY KEY,
    course_id  bigint NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    status     text NOT NULL CHECK (status IN ('published', 'unpublished', 'deleted')),
    changed_at timestamptz NOT NULL,
    source     text NOT NULL,
    webhook_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT course_status_changes_once UNIQUE (course_id, changed_at, status)
);
CREATE INDEX course_status_changes_course_time_idx ON course_status_changes (course_id, changed_at);

-- Links: which courses grant which competences, with the backfill's progress.
CREATE TABLE links (
    id                   bigserial PRIMARY KEY,
    course_id            bigint NOT NULL REFERENCES courses (id) ON DELETE RESTRICT,
    competence_id        bigint NOT NULL REFERENCES competences (id) ON DELETE CASCADE,
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text NOT NULL,
    backfill_state       text NOT NULL DEFAULT 'pending'
                         CHECK (backfill_state IN ('pending', 'running', 'done', 'failed')),
    backfill_total       integer NOT NULL DEFAULT 0,
    backfill_processed   integer NOT NULL DEFAULT 0,
    backfill_granted     integer NOT NULL DEFAULT 0,
    backfill_unmatched   integer NOT NULL DEFAULT 0,
    backfill_failed      integer NOT NULL DEFAULT 0,
    backfill_started_at  timestamptz,
    backfill_finished_at timestamptz,
    backfill_checkpoint  jsonb,
    backfill_error       text,
    CONSTRAINT links_course_competence_key UNIQUE (course_id, competence_id)
);
CREATE INDEX links_competence_id_idx ON links (competence_id);

-- Results: one participant's outcome of one course, as InfoCaption reported it.
CREATE TABLE results (
    id               text PRIMARY KEY,          -- InfoCaption resultId
    course_id        bigint NOT NULL REFERENCES courses (id) ON DELETE RESTRICT,
    email            text NOT NULL,
    email_normalized text NOT NULL,
    first_name       text,
    last_name        text,
    passed           boolean NOT NULL,
    score            numeric,
    completed_at     timestamptz NOT NULL,
    changed_at       timestamptz,
    status           text NOT NULL DEFAULT 'received'
                     CHECK (status IN ('received', 'granted', 'failed', 'unmatched',
                                       'no_link', 'course_not_published')),
    employee_id      bigint REFERENCES employees (id) ON DELETE SET NULL,
    webhook_id       text,
    source           text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX results_email_normalized_idx ON results (email_normalized);
CREATE INDEX results_unmatched_idx ON results (email_normalized) WHERE status = 'unmatched';
CREATE INDEX results_course_completed_idx ON results (course_id, completed_at);

-- Grants: a competence registered on an employee. At most one per employee and competence
-- (docs/rules.md, rule 3). source = 'manual' marks a grant the integration did not create.
CREATE TABLE grants (
    id            bigserial PRIMARY KEY,
    employee_id   bigint NOT NULL REFERENCES employees (id) ON DELETE CASCADE,
    competence_id bigint NOT NULL REFERENCES competences (id) ON DELETE CASCADE,
    valid_from    date NOT NULL,
    valid_to      date,
    source        text NOT NULL CHECK (source IN ('webhook', 'backfill', 'reconciliation',
                                                  'employee_update', 'manual')),
    course_id     bigint,
    result_id     text,
    webhook_id    text,
    link_id       bigint,                      -- no FK: deleting a link keeps its grants
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT grants_employee_competence_key UNIQUE (employee_id, competence_id),
    CHECK (valid_to IS NULL OR valid_to >= valid_from)
);
CREATE INDEX grants_competence_id_idx ON grants (competence_id);

-- Revoked grants are remembered so that the same result never grants them again (rule 5).
CREATE TABLE grant_revocations (
    id            bigserial PRIMARY KEY,
    grant_id      bigint NOT NULL,
    employee_id   bigint NOT NULL REFERENCES employees (id) ON DELETE CASCADE,
    competence_id bigint NOT NULL REFERENCES competences (id) ON DELETE CASCADE,
    result_id     text,
    valid_from    date NOT NULL,
    valid_to      date,
    reason        text NOT NULL CHECK (length(btrim(reason)) > 0),
    revoked_by    text NOT NULL,
    revoked_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX grant_revocations_employee_competence_idx
    ON grant_revocations (employee_id, competence_id);

-- Webhook ids already processed: a redelivery is dropped (docs/webhooks.md).
CREATE TABLE webhook_receipts (
    webhook_id   text PRIMARY KEY,
    event_type   text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Webhooks answered 4xx, kept for ops with the reason.
CREATE TABLE rejected_webhooks (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    webhook_id  text,
    status      integer NOT NULL,
    reason      text NOT NULL,
    errors      jsonb,
    headers     jsonb NOT NULL DEFAULT '{}',
    body        bytea
);
CREATE INDEX rejected_webhooks_received_at_idx ON rejected_webhooks (received_at);

-- Events a worker could not process; ops replay them.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    queue       text NOT NULL,
    webhook_id  text,
    event_type  text,
    payload     jsonb NOT NULL,
    error       text NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz
);
CREATE INDEX dead_letters_pending_idx ON dead_letters (failed_at) WHERE replayed_at IS NULL;

-- Admin API tokens: only a SHA-256 hash is stored.
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL,
    token_hash   text NOT NULL,
    permissions  text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CONSTRAINT api_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE UNIQUE INDEX api_tokens_active_name_idx ON api_tokens (name) WHERE revoked_at IS NULL;

-- Every change made through the admin API or the CLI.
CREATE TABLE audit_log (
    id     bigserial PRIMARY KEY,
    actor  text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    before jsonb,
    after  jsonb,
    at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

-- Work that must start after a transaction commits (e.g. a link's backfill): written in the
-- same transaction, relayed to the queue by the scheduler, so nothing is lost in between.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    topic        text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

-- Cursors of periodic jobs (reconciliation, catalog refresh).
CREATE TABLE job_cursors (
    name       text PRIMARY KEY,
    cursor     jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

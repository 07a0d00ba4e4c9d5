-- A backfill's pages as units of work that any backfill worker can take (workers/backfill.py;
-- docs/processes.md, "The backfill"). A unit is a range of API pages of one run of one link;
-- `next_page` is where it resumes, `done_at` says it was stored to its end, `least_total` is
-- the smallest total the API reported while it was read (a total that shrank while paging
-- means one more pass). Results are stored per page; grants are decided afterwards, from the
-- stored history in completion order.
CREATE TABLE backfill_units (
    id          bigserial PRIMARY KEY,
    link_id     bigint NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    run         integer NOT NULL,
    first_page  integer NOT NULL CHECK (first_page >= 1),
    last_page   integer NOT NULL CHECK (last_page >= first_page),
    next_page   integer NOT NULL,
    least_total integer,
    done_at     timestamptz,
    UNIQUE (link_id, run, first_page)
);

-- A backfill left running by the earlier design (its checkpoint names a page, not a run)
-- starts again from its first page: storing a page twice changes nothing (docs/rules.md,
-- rule 4), so only the time of the pages already read is lost.
UPDATE links SET backfill_checkpoint = NULL
 WHERE backfill_state IN ('running', 'failed')
   AND NOT (backfill_checkpoint ? 'run');

-- The grant decision of a run, in parts by employee (employee id modulo `parts`): the grants
-- of one employee depend on the order of that employee's results only, so each part is decided
-- in completion order on its own, and several workers decide parts at once. `after_at` and
-- `after_id` are where a part resumes.
CREATE TABLE backfill_sweep_parts (
    id       bigserial PRIMARY KEY,
    link_id  bigint NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    run      integer NOT NULL,
    part     integer NOT NULL,
    parts    integer NOT NULL CHECK (parts >= 1 AND part >= 0 AND part < parts),
    after_at timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00',  -- before every result
    after_id text NOT NULL DEFAULT '',
    done_at  timestamptz,
    UNIQUE (link_id, run, part)
);

-- The scheduler (workers/scheduler.py): one process at a time works, by a session advisory lock.

-- name: scheduler_try_lock
SELECT pg_try_advisory_lock(%(key)s);

-- name: scheduler_ping
-- Notices a lost session (and with it the lock) early.
SELECT 1;

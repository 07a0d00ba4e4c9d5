"""Parts 2 and 5: events per second from a pre-filled queue to committed grants.

Each consumer gets a fresh copy of the same database and its own queue, filled with the same
100,000 events before it starts. Its rate is measured inside the database: the events
committed by transactions that began before the last one, over the time between the first
and the last transaction's start (webhook_receipts.processed_at = now() = transaction start),
so process start-up and the poller's period do not count.
"""
from __future__ import annotations

import time

import psycopg

from bench import data, rabbit
from bench.common import BIN, Run, admin, db_url, drop_database, say

CONSUMERS = {
    "worker": lambda: [str(BIN / "competence-bridge"), "worker", "--queue", "events"],
    "ceiling": lambda: [str(BIN / "python"), "-m", "bench.consumers", "ceiling"],
    "naive": lambda: [str(BIN / "python"), "-m", "bench.consumers", "naive"],
}


def measure(run: Run, label: str, consumer: str, template: str, events: list[dict], *,
            time_cap: float, db_name: str | None = None) -> dict:
    """Run one consumer over the events on a copy of `template`; return its figures."""
    name, url = run.database(label, template) if db_name is None else (db_name, db_url(db_name))
    prefix = run.prefix(label)
    with admin() as a:
        a.execute("CHECKPOINT")  # no checkpoint from the copy or the set-up writes in the window
    fill_s = rabbit.fill(prefix, events)
    say(f"  {label}: {len(events):,} events queued in {fill_s:.1f}s; starting {consumer}")
    with admin() as a:
        counters_before = a.execute(data.q("server_counters")).fetchone()
    proc = run.start(CONSUMERS[consumer](), run.env(url, prefix), label)
    total = len(events)
    done = 0
    capped = False
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn, run.profiled(proc, label, time_cap):
        last_note = started
        while True:
            done = conn.execute(data.q("receipts_done")).fetchone()[0]
            if done >= total:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{consumer} exited with {proc.returncode}:\n{run.log_tail(label)}")
            if time.monotonic() - started > time_cap:
                capped = True
                break
            if time.monotonic() - last_note > 10:
                say(f"  {label}: {done:,}/{total:,}")
                last_note = time.monotonic()
            time.sleep(0.25)
    with admin() as a:
        counters_after = a.execute(data.q("server_counters")).fetchone()
        wal = a.execute(data.q("wal_bytes"), {"after": counters_after[0], "before": counters_before[0]}).fetchone()[0]
    run.stop(proc)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(data.q("receipt_window")).fetchone()
        counted, seconds, taken, transactions = row
        outcome = dict(zip(("receipts", "results", "granted", "failed", "grants", "dead_letters"),
                           conn.execute(data.q("run_outcome")).fetchone()))
    seconds = float(seconds or 0)
    rate = counted / seconds if seconds else 0.0
    figures = {"consumer": consumer, "events": total, "processed": taken, "capped": capped,
               "window_events": counted, "transactions": transactions, "window_s": round(float(seconds), 3),
               "events_per_s": round(rate, 1), "outcome": outcome,
               "server": {"wal_bytes_per_event": round(float(wal) / max(taken, 1)),
                          "checkpoints": counters_after[1] - counters_before[1],
                          "backend_buffer_writes": counters_after[2] - counters_before[2]}}
    if not capped:
        expected = data.expected_outcome(total)
        figures["correct"] = all(outcome[k] == v for k, v in expected.items()) and not outcome["dead_letters"]
        if not figures["correct"]:
            say(f"  {label}: UNEXPECTED OUTCOME {outcome} (expected {expected})")
    say(f"  {label}: {rate:,.0f} events/s ({counted:,} events in {float(seconds):.1f}s"
        f"{', time cap reached' if capped else ''})")
    rabbit.delete_prefix(prefix)
    run.prefixes.remove(prefix)
    if db_name is None:
        drop_database(name)
        run.databases.remove(name)
    return figures

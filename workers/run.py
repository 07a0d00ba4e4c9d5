"""Start the queue consumers of this process."""
from __future__ import annotations

import logging
import threading

from service.events.delivery import DeliveryLoop
from service.platform import db
from service.platform.config import Settings
from service.platform.observability import init_sentry
from workers.backfill import BackfillWorker
from workers.results import ResultWorker

log = logging.getLogger(__name__)


def run_workers(settings: Settings, database_url: str, queue: str = "all") -> None:
    """Run the consumers for `queue` until SIGTERM/SIGINT."""
    init_sentry(settings.sentry_dsn, "worker", settings.environment)
    pool = db.make_pool(database_url, max_size=4, name="worker", time_zone=settings.time_zone)
    pool.wait(timeout=60)
    workers = []
    if queue in ("events", "all"):
        workers.append(ResultWorker(settings, pool))
    if queue in ("backfill", "all"):
        workers.append(BackfillWorker(settings, pool))
    if not workers and queue != "deliveries":
        raise SystemExit(f"no consumer for queue {queue!r}")
    # Outgoing events go out from threads and a pool of their own, so that a subscriber that is
    # slow or down never holds up the consumers (docs/events.md, "Delivery").
    deliveries = None
    if queue in ("deliveries", "all"):
        deliveries = DeliveryLoop(settings, database_url)
        deliveries.start()
    if not workers:
        _wait_for_signal()
        deliveries.stop()
        pool.close()
        return
    main, *others = workers
    main.install_signal_handlers()
    threads = [threading.Thread(target=w.run, name=w.kind, daemon=True) for w in others]
    for t in threads:
        t.start()
    try:
        main.run()
    finally:
        for w in others:
            w.stop()
        for t in threads:
            t.join(timeout=30)
        if deliveries is not None:
            deliveries.stop()
        pool.close()


def _wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT (a process that runs only the delivery loop)."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(1.0)

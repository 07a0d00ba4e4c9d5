"""A Sentry transport that keeps every envelope in memory instead of sending it."""
from __future__ import annotations

import re
import threading

import sentry_sdk
from sentry_sdk.transport import Transport

from service.platform import observability

# Independent of the service's own pattern: anything shaped like an address counts.
ANY_EMAIL = re.compile(r"[^\s@'\"<>(),;:]+@[^\s@'\"<>(),;:]+\.[A-Za-z]{2,}")
DSN = "http://public@127.0.0.1:9/1"  # never contacted: the transport below replaces HTTP


class CapturingTransport(Transport):
    def __init__(self, options=None):
        super().__init__(options)
        self._lock = threading.Lock()
        self.envelopes = []

    def capture_envelope(self, envelope) -> None:
        with self._lock:
            self.envelopes.append(envelope)

    def serialized(self) -> str:
        """Every envelope exactly as it would have gone over the wire."""
        with self._lock:
            return b"".join(e.serialize() for e in self.envelopes).decode("utf-8")

    def events(self) -> list[dict]:
        with self._lock:
            return [e.get_event() for e in self.envelopes if e.get_event() is not None]


def start(process: str) -> CapturingTransport:
    transport = CapturingTransport()
    assert observability.init_sentry(DSN, process, "test", transport=transport)
    return transport


def stop() -> None:
    """Back to a Sentry that sends nothing, with no tag left for the next test."""
    client = sentry_sdk.get_client()
    client.flush(timeout=5)
    client.close()
    sentry_sdk.init()
    sentry_sdk.get_global_scope().remove_tag("process")
    observability.set_process_role(None)

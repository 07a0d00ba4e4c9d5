"""Scrubbing, log lines and Sentry tags, in process (the capturing transport sends nothing)."""
from __future__ import annotations

import json
import logging
import threading

import pytest

from service.platform import config
from service.platform.config import metrics_port
from service.platform.observability import JsonFormatter, before_send, mask_email, scrub, scrub_text
from tests.unit.ops import sentry_util
from tests.unit.ops.sentry_util import ANY_EMAIL
from workers.base import BatchWorker


def test_unicode_addresses_are_masked_whole():
    assert scrub_text("för åsa.öberg@kommun.se idag") == "för å***@kommun.se idag"
    assert scrub_text("för åsa.öberg@kommun.se idag", strict=True) == "för [email at kommun.se] idag"
    assert mask_email("Åsa@kommun.se") == "Å***@kommun.se"


def test_sentry_values_lose_names_and_every_address_shape():
    event = {
        "extra": {"payload": {"user": {"email": "anna@kommun.se", "firstName": "Anna"},
                              "result": {"email": "bo@kommun.se", "first_name": "Bo", "last_name": "Berg"}}},
        "request": {"headers": {"Authorization": "Bearer abc.def", "X-Forwarded-For": "10.1.2.3"}},
        "message": "no employee for bo@kommun.se",
    }
    out = before_send(event, {})
    text = json.dumps(out)
    assert not ANY_EMAIL.search(text)
    assert "Anna" not in text and "Berg" not in text and "abc.def" not in text and "10.1.2.3" not in text
    assert out["message"] == "no employee for [email at kommun.se]"
    assert out["extra"]["payload"]["user"] == "[Filtered]"


def test_a_dead_letter_report_is_grouped_by_queue_type_and_error_class():
    event = {"message": "event dead-lettered: KeyError: 'result' for r-1",
             "tags": {"queue": "events", "event_type": "course.completed"}}
    assert before_send(event, {})["fingerprint"] == ["dead-letter", "events", "course.completed", "KeyError"]


class _Exploding(BatchWorker):
    kind = "backfill"

    def handle(self, conn, bodies):
        raise RuntimeError("no link for anna.andersson@kommun.se (token cbt_secret123)")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_unhandled_error_in_a_consumer_thread_is_tagged_with_its_queue():
    transport = sentry_util.start("worker")
    try:
        worker = _Exploding(config.load({"DEMO": "1"}), pool=None)
        thread = threading.Thread(target=worker.handle, args=(None, []))
        thread.start()
        thread.join()
        events = transport.events()
    finally:
        sentry_util.stop()
    assert len(events) == 1
    assert events[0]["tags"]["process"] == "worker" and events[0]["tags"]["queue"] == "backfill"
    raw = transport.serialized()
    assert not ANY_EMAIL.search(raw) and "andersson" not in raw and "cbt_secret123" not in raw


def test_gunicorn_access_lines_are_json_with_fields_and_no_address():
    atoms = {"m": "GET", "U": "/api/v1/employees/anna@kommun.se", "s": "200", "D": 1500,
             "h": "10.0.0.9"}
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(m)s %(U)s %(s)s", atoms, None)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "GET /api/v1/employees/a***@kommun.se 200"
    assert (line["method"], line["path"], line["status"], line["duration_ms"]) == (
        "GET", "/api/v1/employees/a***@kommun.se", "200", 1.5)
    assert "10.0.0.9" not in json.dumps(line)


def test_metrics_port_per_role():
    assert metrics_port("worker", {}) == 9101
    assert metrics_port("scheduler", {}) == 9102
    assert metrics_port("worker", {"METRICS_PORT": "9200"}) == 9200
    assert metrics_port("scheduler", {"METRICS_PORT": "0"}) is None
    for bad in ("nine", "70000", "-1"):
        with pytest.raises(config.ConfigError, match="METRICS_PORT"):
            metrics_port("worker", {"METRICS_PORT": bad})


def test_scrub_keeps_what_is_not_personal():
    value = {"webhook_id": "msg-1", "count": 3, "course": {"id": 4711, "name": "HLR vuxen"}}
    assert scrub(value) == value


def test_gunicorn_logs_every_request_but_accepted_webhooks(monkeypatch):
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from service.platform.observability import AccessLogger

    logged = []
    monkeypatch.setattr(Logger, "access", lambda self, resp, req, environ, t: logged.append(
        (req.method, req.path, resp.status_code)))
    cfg = Config()
    cfg.set("accesslog", "-")
    logger = AccessLogger(cfg)
    for method, path, status in [("POST", "/webhooks/infocaption", 202),
                                 ("POST", "/webhooks/infocaption", 401),
                                 ("POST", "/webhooks/infocaption", 503),
                                 ("POST", "/webhooks/infocaption/kommun-b", 202),
                                 ("POST", "/webhooks/infocaption/kommun-b", 404),
                                 ("GET", "/healthz", 200),
                                 ("POST", "/api/v1/links", 202)]:
        logger.access(SimpleNamespace(status_code=status), SimpleNamespace(method=method, path=path), {}, None)
    assert logged == [("POST", "/webhooks/infocaption", 401), ("POST", "/webhooks/infocaption", 503),
                      ("POST", "/webhooks/infocaption/kommun-b", 404), ("GET", "/healthz", 200), ("POST", "/api/v1/links", 202)]

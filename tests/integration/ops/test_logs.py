"""One JSON line per event handled, with webhook id and result id, and no raw email anywhere."""
from __future__ import annotations

import io
import json
import logging

import pytest

from service.platform.observability import JsonFormatter
from tests.conftest import completed_event, wait_for
from tests.integration.ops.metrics_util import add_employee, post, seed_course_link
from tests.unit.ops.sentry_util import ANY_EMAIL

pytestmark = pytest.mark.integration


@pytest.fixture
def log_output(caplog):
    """What the service's JSON handler writes, at INFO, for the duration of the test."""
    caplog.set_level(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_each_handled_event_logs_one_line_with_ids_and_no_email(conn, client, run_worker, log_output):
    seed_course_link(conn)
    add_employee(conn, "Anna.Andersson@kommun.se")
    run_worker()
    sent = {
        "m-log-1": completed_event("r-log-1", "Anna.Andersson@kommun.se"),
        "m-log-2": completed_event("r-log-2", "Åsa.Öberg@kommun.se"),  # unmatched
        "m-log-3": completed_event("r-log-3", "anna.andersson@kommun.se", passed=False),
    }
    for msg_id, body in sent.items():
        assert post(client, body, msg_id=msg_id).status_code == 202

    handled = wait_for(lambda: len(h := [e for e in lines(log_output) if e["msg"] == "event handled"]) == 3 and h,
                       message="three events handled")
    assert {(e["webhook_id"], e["result_id"], e["event"], e["outcome"]) for e in handled} == {
        ("m-log-1", "r-log-1", "course.completed", "granted"),
        ("m-log-2", "r-log-2", "course.completed", "unmatched"),
        ("m-log-3", "r-log-3", "course.completed", "not_passed"),
    }
    assert all(e["logger"] == "workers.results" and e["level"] == "info" for e in handled)

    raw = log_output.getvalue()
    assert raw.strip(), "the worker wrote nothing"
    assert "andersson" not in raw.lower() and "öberg" not in raw.lower()
    leaked = [m.group(0) for m in ANY_EMAIL.finditer(raw) if "***@" not in m.group(0)]
    assert leaked == []


def test_a_caller_that_forgets_to_mask_leaks_nothing(log_output):
    log = logging.getLogger("workers.results")
    log.warning("could not grant %s", "Anna.Andersson@kommun.se", extra={"webhook_id": "m-x", "outcome": "x"})
    try:
        raise ValueError("bad row for åsa.öberg@kommun.se, token cbt_abc123, Bearer xyz")
    except ValueError:
        log.exception("failed for %s", "bo@kommun.se")
    (first, second) = lines(log_output)
    assert first["msg"] == "could not grant A***@kommun.se" and first["webhook_id"] == "m-x"
    assert second["msg"] == "failed for b***@kommun.se"
    assert "å***@kommun.se" in second["exc"]
    assert "öberg" not in second["exc"] and "cbt_abc123" not in second["exc"] and "xyz" not in second["exc"]

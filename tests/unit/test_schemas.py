"""The webhook schema: what is accepted, what is refused, and the queued shape."""
from __future__ import annotations

import copy
import json

import pytest
from marshmallow import ValidationError

from service.ingest.schema import may_hold_unstorable_text, parse_event
from tests.conftest import completed_event, course_event


def test_completed_event_becomes_the_queued_shape():
    event = parse_event(completed_event("r-98765", "Anna.Andersson@kommun.se", timestamp="2026-11-30T10:00:00Z"))
    assert event == {
        "type": "course.completed",
        "timestamp": "2026-11-30T10:00:00+00:00",
        "course": {"id": 4711, "name": "HLR vuxen", "guide_type": 14},
        "result": {"id": "r-98765", "email": "Anna.Andersson@kommun.se", "first_name": "Anna",
                   "last_name": "Andersson", "passed": True, "score": 92.0,
                   "completed_at": "2026-11-29T12:00:00+01:00"},
    }


@pytest.mark.parametrize("kind", ["published", "unpublished", "deleted"])
def test_course_status_events(kind):
    event = parse_event(course_event(kind, 4711, timestamp="2026-11-30T10:00:00Z"))
    assert event == {"type": f"course.{kind}", "timestamp": "2026-11-30T10:00:00+00:00",
                     "course": {"id": 4711, "name": "HLR vuxen", "guide_type": 14}}


def test_unknown_type_is_none_and_unknown_fields_are_ignored():
    assert parse_event({"type": "course.rated", "timestamp": "2026-11-30T10:00:00Z", "data": {}}) is None
    body = completed_event("r-1", "a@b.se")
    body["data"]["extra"] = 1
    assert "extra" not in str(parse_event(body))


def _broken(path, value):
    body = completed_event("r-1", "anna@kommun.se")
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    "path, value",
    [
        (("data", "passed"), "true"),
        (("data", "passed"), 1),
        (("data", "resultId"), ""),
        (("data", "resultId"), KeyError),
        (("data", "course", "id"), "4711"),
        (("data", "course", "guideType"), KeyError),
        (("data", "user", "email"), "no-at-sign"),
        (("data", "user", "email"), "two words@kommun.se"),
        (("data", "completedAt"), "2026-11-29T12:00:00"),
        (("data", "completedAt"), "yesterday"),
        (("data", "user", "firstName"), "nul\x00byte"),
        (("timestamp",), KeyError),
        (("data",), KeyError),
    ],
)
def test_schema_refusals_name_the_field(path, value):
    with pytest.raises(ValidationError) as info:
        parse_event(_broken(path, value))
    messages = info.value.messages
    for key in path[:-1] if value is not KeyError or len(path) > 1 else ():
        assert key in messages, messages
        messages = messages[key]


@pytest.mark.parametrize("body", [[], "text", 5, None])
def test_non_object_bodies_are_refused(body):
    with pytest.raises(ValidationError):
        parse_event(copy.deepcopy(body))


def _user(**fields) -> dict:
    body = completed_event("r-1", "anna@kommun.se")
    body["data"]["user"].update(fields)
    return body


@pytest.mark.parametrize("raw, where", [
    # a lone surrogate written as an escape, as json.dumps writes it
    (json.dumps(_user(firstName="\ud800")).encode(), "firstName"),
    # a lone surrogate written as its own (invalid) UTF-8 bytes, which json reads all the same
    (json.dumps(_user(firstName="\ud800"), ensure_ascii=False)
     .encode("utf-8", "surrogatepass"), "firstName"),
    # NUL, which JSON can carry only as an escape
    (json.dumps(_user(lastName="x\x00")).encode(), "lastName"),
])
def test_unstorable_text_is_refused_when_the_raw_body_is_given_too(raw, where):
    """The view hands parse_event the raw bytes so that it can skip the walk over the strings
    of a body that cannot hold such text; a body that can is still walked."""
    with pytest.raises(ValidationError) as info:
        parse_event(json.loads(raw), raw=raw)
    assert where in info.value.messages["data"]["user"]


def test_plain_bodies_need_no_walk_over_their_text():
    raw = json.dumps(_user(firstName="Åsa"),
                     ensure_ascii=False).encode()
    assert not may_hold_unstorable_text(raw)
    assert parse_event(json.loads(raw), raw=raw)["result"]["first_name"] == "Åsa"
    assert may_hold_unstorable_text(raw.replace("Åsa".encode(), b"\\u00c5sa"))

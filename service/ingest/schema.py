"""marshmallow schema of the InfoCaption webhook body (docs/webhooks.md)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates, validates_schema

from service.people.email import email_shape_problem
from service.ingest import message

RESULT_TYPES = frozenset({"course.completed"})
COURSE_TYPES = frozenset({"course.published", "course.unpublished", "course.deleted"})
KNOWN_TYPES = RESULT_TYPES | COURSE_TYPES

# docs/webhooks.md: completions before this, or more than a day ahead of our clock, are refused.
EARLIEST_COMPLETION = datetime(2000, 1, 1, tzinfo=timezone.utc)
COMPLETION_AHEAD = timedelta(days=1)
NOT_UNICODE = "must be valid Unicode text (no lone surrogates)"
HAS_NUL = "must not contain NUL characters"


def escape_text(value: str) -> str:
    """Return text PostgreSQL can store: lone surrogates and NUL written as escapes."""
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def escape_tree(value):
    """Return a copy of a JSON value whose keys and strings are all storable (escape_text)."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {escape_text(str(k)): escape_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_tree(v) for v in value]
    return value


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return HAS_NUL
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return NOT_UNICODE
    return None


def text_errors(body) -> dict:
    """Field errors for every key or string of a JSON value that PostgreSQL cannot store.

    The whole body is walked, unknown fields too: a lone surrogate or NUL anywhere would fail
    later, in the worker or when the event is dead-lettered. Iterative: the body may be deep.
    """
    errors: dict = {}
    stack = [((), body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                _put(errors, path, problem)
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(key)
                if problem:
                    _put(errors, path + (escape_text(key),), f"field name {problem}")
                stack.append((path + (escape_text(key),), item))
        elif isinstance(value, list):
            stack.extend((path + (index,), item) for index, item in enumerate(value))
    return errors


def may_hold_unstorable_text(raw: bytes) -> bool:
    """Tell whether JSON parsed from `raw` may hold a lone surrogate or a NUL (text_errors).

    JSON text gets either only from a `\\u` escape, or from bytes that are not strict UTF-8
    (json decodes bytes with "surrogatepass"; a raw NUL is not valid JSON): bodies with
    neither, which is nearly every body, need no walk over their strings.
    """
    if b"\\u" in raw or b"\x00" in raw:
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _put(errors: dict, path: tuple, message: str) -> None:
    path = path or ("_body",)
    node = errors
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):  # the field name itself was refused: that says enough
            return
    found = node.setdefault(path[-1], [])
    if isinstance(found, list):
        found.append(message)


def _text_rule(min_len: int = 0):
    return [validate.Length(min=min_len, max=1000)]


_text = dict(required=True, validate=_text_rule(1))


class StrictBoolean(fields.Boolean):
    """JSON true or false only: not 1, 0, "true" or "yes"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE  # senders add fields; we ignore what we do not know


class CourseSchema(_Base):
    id = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**62))
    name = fields.String(required=True, validate=_text_rule())
    guideType = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=10_000))


class UserSchema(_Base):
    email = fields.String(**_text)
    firstName = fields.String(load_default=None, allow_none=True, validate=_text_rule())
    lastName = fields.String(load_default=None, allow_none=True, validate=_text_rule())

    @validates_schema
    def _email_shape(self, data, **kwargs):
        problem = email_shape_problem(data.get("email", ""))
        if problem:
            raise ValidationError(problem, "email")


class ResultDataSchema(_Base):
    resultId = fields.String(**_text)
    course = fields.Nested(CourseSchema, required=True)
    user = fields.Nested(UserSchema, required=True)
    passed = StrictBoolean(required=True)
    score = fields.Float(load_default=None, allow_none=True, allow_nan=False,
                         validate=validate.Range(min=-1e9, max=1e9))
    completedAt = fields.AwareDateTime(required=True, format="iso")

    @validates("completedAt")
    def _plausible_completion(self, value: datetime, **kwargs) -> None:
        latest = datetime.now(timezone.utc) + COMPLETION_AHEAD
        if not EARLIEST_COMPLETION <= value <= latest:
            raise ValidationError("must lie between 2000-01-01 and one day after now")


class CourseDataSchema(_Base):
    course = fields.Nested(CourseSchema, required=True)


class EnvelopeSchema(_Base):
    type = fields.String(required=True, validate=validate.Length(min=1, max=200))
    timestamp = fields.AwareDateTime(required=True, format="iso")
    data = fields.Dict(required=True)


# One instance of each, made once: building a Schema copies its fields (~250 us a request);
# load() does not change the instance, so threads may share them.
_ENVELOPE, _RESULT_DATA, _COURSE_DATA = EnvelopeSchema(), ResultDataSchema(), CourseDataSchema()


def parse_event(body, raw: bytes | None = None) -> dict | None:
    """Validate a webhook body; return the event in the queue's shape, None for unknown types.

    `raw`: the bytes `body` was parsed from, if the caller has them; when they cannot hold
    unstorable text (may_hold_unstorable_text), the walk over every string is skipped.
    Raises ValidationError with field errors when the body does not fit the schema.
    """
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["the body must be a JSON object"]})
    bad_text = text_errors(body) if raw is None or may_hold_unstorable_text(raw) else None
    if bad_text:
        raise ValidationError(bad_text)
    envelope = _ENVELOPE.load(body)
    kind = envelope["type"]
    if kind not in KNOWN_TYPES:
        return None
    if kind in RESULT_TYPES:
        try:
            data = _RESULT_DATA.load(envelope["data"])
        except ValidationError as err:
            raise ValidationError({"data": err.messages}) from None
        user = data["user"]
        return message.result_event(
            timestamp=envelope["timestamp"], course=_course(data["course"]),
            result_id=data["resultId"], email=user["email"], first_name=user["firstName"],
            last_name=user["lastName"], passed=data["passed"], score=data["score"],
            completed_at=data["completedAt"])
    try:
        data = _COURSE_DATA.load(envelope["data"])
    except ValidationError as err:
        raise ValidationError({"data": err.messages}) from None
    return message.course_event(kind, timestamp=envelope["timestamp"], course=_course(data["course"]))


def _course(course: dict) -> dict:
    return message.course(course["id"], course["name"], course["guideType"])

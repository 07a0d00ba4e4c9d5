"""marshmallow schema of the InfoCaption webhook body (CONTRACT section 3)."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from service.domain.rules import normalize_email

RESULT_TYPES = frozenset({"course.completed"})
COURSE_TYPES = frozenset({"course.published", "course.unpublished", "course.deleted"})
KNOWN_TYPES = RESULT_TYPES | COURSE_TYPES



def _no_nul(value: str) -> None:
    # PostgreSQL text cannot hold NUL; reject it here rather than dead-letter it later.
    if "\x00" in value:
        raise ValidationError("must not contain NUL characters")


def _text_rule(min_len: int = 0):
    return [validate.Length(min=min_len, max=1000), _no_nul]


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
        email = normalize_email(data.get("email", ""))
        local, at, domain = email.partition("@")
        if not (local and at and domain) or any(c.isspace() for c in email):
            raise ValidationError("not an email address", "email")


class ResultDataSchema(_Base):
    resultId = fields.String(**_text)
    course = fields.Nested(CourseSchema, required=True)
    user = fields.Nested(UserSchema, required=True)
    passed = StrictBoolean(required=True)
    score = fields.Float(load_default=None, allow_none=True, allow_nan=False,
                         validate=validate.Range(min=-1e9, max=1e9))
    completedAt = fields.AwareDateTime(required=True, format="iso")


class CourseDataSchema(_Base):
    course = fields.Nested(CourseSchema, required=True)


class EnvelopeSchema(_Base):
    type = fields.String(required=True, validate=validate.Length(min=1, max=200))
    timestamp = fields.AwareDateTime(required=True, format="iso")
    data = fields.Dict(required=True)


# One instance of each, made once: building a Schema copies its fields (~250 us a request);
# load() does not change the instance, so threads may share them.
_ENVELOPE, _RESULT_DATA, _COURSE_DATA = EnvelopeSchema(), ResultDataSchema(), CourseDataSchema()


def parse_event(body) -> dict | None:
    """Validate a webhook body; return the event in the queue's shape, None for unknown types.

    Raises ValidationError with field errors when the body does not fit the schema.
    """
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["the body must be a JSON object"]})
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
        return {
            "type": kind,
            "timestamp": envelope["timestamp"].isoformat(),
            "course": _course(data["course"]),
            "result": {
                "id": data["resultId"],
                "email": user["email"],
                "first_name": user["firstName"],
                "last_name": user["lastName"],
                "passed": data["passed"],
                "score": data["score"],
                "completed_at": data["completedAt"].isoformat(),
            },
        }
    try:
        data = _COURSE_DATA.load(envelope["data"])
    except ValidationError as err:
        raise ValidationError({"data": err.messages}) from None
    return {"type": kind, "timestamp": envelope["timestamp"].isoformat(), "course": _course(data["course"])}


def _course(course: dict) -> dict:
    return {"id": course["id"], "name": course["name"], "guide_type": course["guideType"]}

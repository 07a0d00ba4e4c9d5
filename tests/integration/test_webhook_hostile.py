"""Hostile and bad input on the webhook endpoint: never a 5xx, never a 2xx without a valid
signature, and text is stored verbatim or refused, never executed."""
from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.conftest import SECRET, completed_event, dumps, sign, wait_for
from tests.integration.test_pipeline import add_employee, seed_links

pytestmark = pytest.mark.integration
URL = "/webhooks/infocaption"
HYP = dict(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

header_text = st.text(alphabet=string.printable.replace("\n", "").replace("\r", ""), max_size=120)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)


@given(
    body=st.one_of(st.binary(max_size=2048), st.binary(min_size=65_000, max_size=70_000),
                   json_values.map(lambda v: json.dumps(v).encode())),
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "x-other"]),
        header_text, max_size=5),
)
@hsettings(**HYP)
def test_unsigned_or_badly_signed_input_is_never_2xx_nor_5xx(client, body, headers):
    response = client.post(URL, data=body, headers=headers)
    assert response.status_code in (401, 413), response.status_code
    assert response.is_json and response.json["code"] == response.status_code


@given(
    body=st.one_of(
        st.binary(max_size=2048),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({"type": st.sampled_from(["course.completed", "course.deleted", "x"]),
                               "timestamp": st.text(max_size=30), "data": json_values}).map(lambda v: json.dumps(v).encode()),
    ),
)
@hsettings(**HYP)
def test_validly_signed_garbage_is_400_or_202_never_5xx(client, body):
    try:
        text, utf8 = body.decode("utf-8"), True
    except UnicodeDecodeError:
        text, utf8 = body.decode("latin-1"), False
    response = client.post(URL, data=body, headers=sign(text, secret=SECRET))
    # A body that is not UTF-8 cannot carry a Standard Webhooks signature: 401.
    assert response.status_code in ((202, 400) if utf8 else (401,)), response.status_code
    if response.status_code == 202:
        assert response.json["status"] in ("accepted", "ignored")


HOSTILE = [
    "'; DROP TABLE grants; --",
    "Robert'); DELETE FROM results WHERE ('1'='1",
    "%(email)s %s {} \\x00",
    "\\\\'\"`$(reboot)",
    "🙂 Åsa Öberg ﷽",
    "x" * 1000,
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_stored_verbatim(conn, client, run_worker, text):
    seed_links(conn)
    add_employee(conn, "anna@kommun.se")
    run_worker()
    body = completed_event(text[:1000], "anna@kommun.se", course_name=text[:1000])
    body["data"]["user"]["firstName"] = text
    raw = dumps(body)
    assert client.post(URL, data=raw, headers=sign(raw)).status_code == 202
    row = wait_for(lambda: conn.execute("SELECT id, first_name FROM results").fetchone(), message="stored")
    assert (row["id"], row["first_name"]) == (text[:1000], text)
    assert conn.execute("SELECT name FROM courses WHERE id = 4711").fetchone()["name"] == "HLR vuxen"
    assert conn.execute("SELECT count(*) AS n FROM grants").fetchone()["n"] == 2  # tables intact


@pytest.mark.parametrize("mutate", [
    lambda b: b["data"]["user"].__setitem__("firstName", "x" * 1001),
    lambda b: b["data"].__setitem__("resultId", "r" * 1001),
    lambda b: b["data"]["user"].__setitem__("lastName", "nul\x00byte"),
])
def test_too_long_or_nul_text_is_400(client, conn, mutate):
    body = completed_event("r-1", "anna@kommun.se")
    mutate(body)
    raw = dumps(body)
    response = client.post(URL, data=raw, headers=sign(raw))
    assert response.status_code == 400
    assert conn.execute("SELECT count(*) AS n FROM rejected_webhooks WHERE status = 400").fetchone()["n"] == 1


def test_non_utf8_body_is_refused_never_5xx(client):
    raw = b'{"type": "course.completed", "x": "\xff\xfe"}'
    response = client.post(URL, data=raw, headers=sign(raw.decode("latin-1")))
    assert response.status_code in (400, 401)


def test_absurdly_nested_json_is_400_not_500(client, conn):
    raw = "[" * 100_000 + "]" * 100_000
    assert len(raw) > 64 * 1024  # over the limit: 413 before parsing
    assert client.post(URL, data=raw, headers=sign(raw)).status_code == 413
    raw = "[" * 30_000 + "]" * 30_000  # under the limit, deeper than the parser recurses
    response = client.post(URL, data=raw, headers=sign(raw))
    assert response.status_code == 400
    assert response.json["errors"] == {"_body": ["not valid JSON"]}

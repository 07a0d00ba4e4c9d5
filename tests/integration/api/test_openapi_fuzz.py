"""schemathesis against the served OpenAPI document: no 5xx, every answer as documented."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.integration.api.conftest import (BOTH, add_course, add_employee, add_grant, add_link,
                                            add_tree)

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 12  # per operation and generation mode: enough to find crashes, quick to run
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]


def seed(conn):
    """Rows with small ids, so that generated ids sometimes hit something."""
    add_course(conn, 1)
    add_course(conn, 2, name="Guide", guide_type=3)
    tree = add_tree(conn)
    link = add_link(conn, 1, tree["leaf"])
    emp = add_employee(conn, "anna@kommun.se")
    add_grant(conn, emp, tree["leaf"], course_id=1, link_id=link)
    conn.execute("INSERT INTO results (id, course_id, email, email_normalized, passed, completed_at,"
                 " status, source) VALUES ('r-u', 1, 'x@y.se', 'x@y.se', true, now(), 'unmatched', 'webhook')")


def test_every_operation_answers_as_documented(app, conn, make_token):
    seed(conn)
    token = make_token("fuzzer", BOTH)
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19  # every operation of docs/admin-api.md is in the document

    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect them all
                failures[f"{operation.label} [{mode.value}]"] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())

"""`competence-bridge send-webhook`: a signed webhook of one's own reaches the web process."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from workers.cli import main
from tests.conftest import wait_for
from tests.integration.test_pipeline import add_employee, seed_links

pytestmark = pytest.mark.integration


def env_of(settings) -> dict:
    return {"DATABASE_URL": settings.database_url, "BROKER_URL": settings.broker_url,
            "QUEUE_PREFIX": settings.queue_prefix, "INFOCAPTION_BASE_URL": settings.infocaption_base_url,
            "INFOCAPTION_CLIENT_ID": "test", "INFOCAPTION_CLIENT_SECRET": "test",
            "INFOCAPTION_WEBHOOK_SECRETS": " ".join(settings.webhook_secrets), "LOG_LEVEL": "WARNING"}


def test_a_webhook_sent_from_the_command_line_is_accepted_and_granted(conn, settings, web_url, run_worker):
    seed_links(conn)
    emp = add_employee(conn, "anna@kommun.se")
    run_worker()
    out = CliRunner().invoke(main, ["send-webhook", "--email", "Anna@Kommun.se", "--course", "4711",
                                    "--result-id", "r-cli", "--url", f"{web_url}/webhooks/infocaption"],
                             env=env_of(settings))
    assert out.exit_code == 0, out.output
    assert out.output.startswith("202 ")
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM grants WHERE result_id = 'r-cli'"
                                  " AND employee_id = %s", (emp,)).fetchone()["n"] == 2,
             message="the webhook's two grants")


def test_a_webhook_signed_with_another_secret_is_refused(conn, settings, web_url):
    env = env_of(settings) | {"INFOCAPTION_WEBHOOK_SECRETS": "whsec_" + "b3RoZXItc2VjcmV0LW9mLXR3ZW50eS1mb3VyIQ=="}
    out = CliRunner().invoke(main, ["send-webhook", "--email", "anna@kommun.se", "--course", "4711",
                                    "--url", f"{web_url}/webhooks/infocaption"], env=env)
    assert out.exit_code == 1 and out.output.startswith("401 "), out.output

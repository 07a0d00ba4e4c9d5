"""Settings fail fast with clear messages; logs and Sentry never carry emails or tokens."""
from __future__ import annotations

import json
import logging

import pytest

from service import config
from service.messaging import DELIVERY_LIMIT, Topology
from service.observability import _JsonFormatter, before_send, mask_email, scrub


def test_demo_mode_needs_no_settings():
    s = config.load({})
    assert s.demo and s.embedded_database and s.embedded_broker
    assert s.webhook_secrets == (config.DEMO_WEBHOOK_SECRET,)
    assert (s.port, s.reconcile_interval_s, s.time_zone) == (8000, 300, "Europe/Stockholm")


def test_secrets_are_required_outside_demo_mode():
    with pytest.raises(config.ConfigError, match="INFOCAPTION_WEBHOOK_SECRETS"):
        config.load({"INFOCAPTION_BASE_URL": "https://kommun.infocaption.com"})


def test_several_secrets_split_on_spaces_and_commas():
    s = config.load({"INFOCAPTION_BASE_URL": "https://x", "INFOCAPTION_WEBHOOK_SECRETS": "whsec_a, whsec_b whsec_c"})
    assert s.webhook_secrets == ("whsec_a", "whsec_b", "whsec_c")


@pytest.mark.parametrize("env, name", [
    ({"PORT": "eighty"}, "PORT"),
    ({"RECONCILE_INTERVAL_S": "0"}, "RECONCILE_INTERVAL_S"),
    ({"TIME_ZONE": "Mars/Olympus"}, "TIME_ZONE"),
    ({"INFOCAPTION_WEBHOOK_SECRETS": "plain"}, "INFOCAPTION_WEBHOOK_SECRETS"),
    ({"QUEUE_PREFIX": "bad prefix"}, "QUEUE_PREFIX"),
])
def test_bad_settings_name_the_variable(env, name):
    with pytest.raises(config.ConfigError, match=name):
        config.load(env)


def test_mask_email_keeps_one_letter_and_the_domain():
    assert mask_email("anna.andersson@kommun.se") == "a***@kommun.se"
    assert mask_email("") == "-"
    assert mask_email("nonsense") == "***"


def test_scrub_masks_nested_emails_tokens_and_secrets():
    event = {"message": "failed for Anna@Kommun.se", "extra": {"list": ["bo@x.se"], "authorization": "Bearer abc"},
             "breadcrumbs": [{"message": "token cbt_abcDEF123 and whsec_Zm9vYmFy"}]}
    text = json.dumps(scrub(event))
    assert "Anna@Kommun.se" not in text and "bo@x.se" not in text
    assert "cbt_abcDEF123" not in text and "whsec_Zm9vYmFy" not in text and "abc" not in text.replace("abcDEF", "")
    assert json.dumps(before_send(event, {})) == text


def test_log_lines_are_json_with_masked_emails():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "matched %s", ("anna@kommun.se",), None)
    record.webhook_id = "msg-1"
    line = json.loads(_JsonFormatter().format(record))
    assert line["msg"] == "matched a***@kommun.se" and line["webhook_id"] == "msg-1"


def test_rabbitmq_queues_are_quorum_with_dead_letters_and_a_delivery_limit():
    topo = Topology("cb", amqp=True)
    args = topo.queue("events").queue_arguments
    assert args == {"x-queue-type": "quorum", "x-dead-letter-exchange": "cb.dlx", "x-delivery-limit": DELIVERY_LIMIT}
    assert topo.queue("dead").exchange.name == "cb.dlx"
    assert Topology("cb", amqp=False).queue("events").queue_arguments is None

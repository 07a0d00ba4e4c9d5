"""Settings fail fast with clear messages; logs and Sentry never carry emails or tokens."""
from __future__ import annotations

import base64
import json
import logging

import pytest

from service.platform import config
from service.platform.messaging import DELIVERY_LIMIT, Topology
from service.platform.observability import JsonFormatter, before_send, mask_email, scrub


KEY = "whsec_" + base64.b64encode(b"a secret of twenty-four!").decode()  # 24 bytes
FULL = {"INFOCAPTION_BASE_URL": "https://kommun.infocaption.com", "INFOCAPTION_CLIENT_ID": "id",
        "INFOCAPTION_CLIENT_SECRET": "secret", "INFOCAPTION_WEBHOOK_SECRETS": KEY}


def test_demo_mode_is_entered_with_demo_1_only():
    s = config.load({"DEMO": "1"})
    assert s.demo and s.embedded_database and s.embedded_broker and s.environment == "demo"
    assert s.webhook_secrets == (config.DEMO_WEBHOOK_SECRET,)
    assert (s.infocaption_base_url, s.infocaption_client_id, s.infocaption_client_secret) == (
        config.DEMO_SIMULATOR_URL, config.DEMO_CLIENT_ID, config.DEMO_CLIENT_SECRET)
    assert (s.port, s.reconcile_interval_s, s.time_zone) == (8000, 300, "Europe/Stockholm")


def test_nothing_set_is_an_error_naming_the_base_url_not_the_demo():
    with pytest.raises(config.ConfigError, match="^INFOCAPTION_BASE_URL is required") as err:
        config.load({})
    assert "\n" not in str(err.value) and "DEMO=1" in str(err.value)


@pytest.mark.parametrize("env", [{"ENVIRONMENT": "production"}, {"DEMO": "0"}, {"DEMO": ""}])
def test_no_other_setting_enters_demo_mode(env):
    with pytest.raises(config.ConfigError, match="INFOCAPTION_BASE_URL"):
        config.load(env)


@pytest.mark.parametrize("name", config.REQUIRED)
def test_each_infocaption_setting_is_required_outside_demo_mode(name):
    env = {k: v for k, v in FULL.items() if k != name}
    with pytest.raises(config.ConfigError, match=f"^{name} is required"):
        config.load(env)
    s = config.load(FULL)
    assert not s.demo and s.environment == "production" and s.webhook_secrets == (KEY,)


def test_several_secrets_split_on_spaces_and_commas():
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    s = config.load({**FULL, "INFOCAPTION_WEBHOOK_SECRETS": f"{KEY}, {other} {KEY}"})
    assert s.webhook_secrets == (KEY, other, KEY)


@pytest.mark.parametrize("secret", [
    "whsec_eA==",                                                # one byte
    "whsec_" + base64.b64encode(b"x" * 23).decode(),             # 23 bytes
    "whsec_not base64!",                                         # not base64
    "whsec_" + base64.b64encode(b"x" * 30).decode()[:-1],        # bad padding
    "whsec_" + base64.b64encode(b"x" * 30).decode() + "*",       # a stray character
    "whsec_" + base64.urlsafe_b64encode(b"\xfb" * 30).decode(),  # the URL-safe alphabet
    "plain",
])
def test_a_weak_or_malformed_webhook_secret_stops_the_start(secret):
    for env in ({**FULL, "INFOCAPTION_WEBHOOK_SECRETS": secret},
                {"DEMO": "1", "INFOCAPTION_WEBHOOK_SECRETS": secret}):
        with pytest.raises(config.ConfigError, match="INFOCAPTION_WEBHOOK_SECRETS") as err:
            config.load(env)
        assert secret.removeprefix("whsec_") not in str(err.value)  # never print the secret


@pytest.mark.parametrize("env, name", [
    ({"PORT": "eighty"}, "PORT"),
    ({"RECONCILE_INTERVAL_S": "0"}, "RECONCILE_INTERVAL_S"),
    ({"TIME_ZONE": "Mars/Olympus"}, "TIME_ZONE"),
    ({"QUEUE_PREFIX": "bad prefix"}, "QUEUE_PREFIX"),
    ({"DEMO": "maybe"}, "DEMO"),
])
def test_bad_settings_name_the_variable(env, name):
    with pytest.raises(config.ConfigError, match=name):
        config.load({"DEMO": "1", **env})
    with pytest.raises(config.ConfigError, match=name):
        config.load({**FULL, **env})


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
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "matched a***@kommun.se" and line["webhook_id"] == "msg-1"


def test_rabbitmq_queues_are_quorum_with_dead_letters_and_a_delivery_limit():
    topo = Topology("cb", amqp=True)
    args = topo.queue("events").queue_arguments
    assert args == {"x-queue-type": "quorum", "x-dead-letter-exchange": "cb.dlx", "x-delivery-limit": DELIVERY_LIMIT}
    assert topo.queue("dead").exchange.name == "cb.dlx"
    assert Topology("cb", amqp=False).queue("events").queue_arguments is None

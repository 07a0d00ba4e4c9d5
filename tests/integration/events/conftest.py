"""A real HTTPS receiver (a trustme test CA) and a real SMTP server (aiosmtpd) for the event tests."""
from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme
from standardwebhooks import Webhook, WebhookVerificationError

from service.platform import config as config_mod

REBINDING_HOST = "hooks.rebinding.example"  # a name the rebinding test resolves itself
ENCRYPTION_KEY = "dGVzdC1lbmNyeXB0aW9uLWtleS1vZi1ldmVudHMtMzI="  # 32 bytes, tests only


class Receiver:
    """An HTTPS subscriber that verifies each signature and answers as it is told.

    `script` is a list of answers used one per request ("ok", "500", "timeout", "redirect");
    when it runs out, `default` answers.
    """

    def __init__(self, server_context: ssl.SSLContext):
        self.requests: list[dict] = []
        self.script: list[str] = []
        self.default = "ok"
        self.secret: str | None = None
        self.delay_s = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = False
                if receiver.secret:
                    try:
                        Webhook(receiver.secret).verify(body, headers)
                        verified = True
                    except WebhookVerificationError:
                        verified = False
                with receiver.lock:
                    answer = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver.requests.append({"path": self.path, "headers": headers, "body": body,
                                              "json": json.loads(body) if body else None,
                                              "verified": verified, "answer": answer})
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                if answer == "timeout":
                    time.sleep(1.5)
                    code = 200
                elif answer == "hang":  # holds the sender until it is killed (at most 8 s)
                    time.sleep(8)
                    code = 200
                elif answer == "500":
                    code = 500
                elif answer == "endless":  # 200 and a body that goes on (8 KiB each 10 ms, 20 s)
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    try:
                        for _ in range(2000):
                            self.wfile.write(b"x" * 8192)
                            self.wfile.flush()
                            time.sleep(0.01)
                    except OSError:
                        pass  # the sender stopped reading and closed
                    return
                elif answer == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                else:
                    code = 200
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up (timeout)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = server_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hooks") -> str:
        return f"https://localhost:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    """A test CA and the bundle file that trusts it."""
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, str(path)


@pytest.fixture
def receiver(test_ca):
    ca, _ = test_ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", REBINDING_HOST).configure_cert(context)
    r = Receiver(context)
    yield r
    r.close()


@pytest.fixture
def event_settings(database_url, broker_url, settings, test_ca):
    """The test's settings as an operator sets them for events: read by config.load from the
    environment (REQUESTS_CA_BUNDLE trusts the test CA; private targets allowed for the
    receiver on this machine)."""
    _, bundle = test_ca
    env = {
        "DATABASE_URL": database_url, "BROKER_URL": broker_url,
        "INFOCAPTION_BASE_URL": "http://127.0.0.1:9", "INFOCAPTION_CLIENT_ID": "test",
        "INFOCAPTION_CLIENT_SECRET": "test",
        "INFOCAPTION_WEBHOOK_SECRETS": " ".join(settings.webhook_secrets),
        "QUEUE_PREFIX": settings.queue_prefix, "TIME_ZONE": "Europe/Stockholm",
        "ENCRYPTION_KEY": ENCRYPTION_KEY, "SUBSCRIBER_ALLOW_PRIVATE": "1",
        "REQUESTS_CA_BUNDLE": bundle,
    }
    return config_mod.load(env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """What a real SMTP server (aiosmtpd) received."""

    def __init__(self):
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):
        import email
        from email import policy

        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "subject": message["subject"], "message_id": message["message-id"],
                              "body": message.get_body(("plain",)).get_content()})
        return "250 OK"


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    box.url = f"smtp://127.0.0.1:{port}"
    yield box
    controller.stop()


def with_changes(settings, **changes):
    return dataclasses.replace(settings, **changes)

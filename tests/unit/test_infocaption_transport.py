"""The InfoCaption client's transport limits, against a real local HTTP server that misbehaves:
http:// refused outside demo mode and localhost, answers capped in size, and a total time
limit however slowly the server trickles its bytes."""
from __future__ import annotations

import dataclasses
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.platform import config as config_mod
from service.infocaption.client import InfoCaptionClient, InfoCaptionRefused, InfoCaptionUnavailable

TOKEN = b'{"access_token": "t", "expires_in": 3600}'
TRICKLE_BYTES = 60  # one every 0.1 s: the whole answer would take 6 s


class Misbehaving(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode = "ok"

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mode = self.server.mode
        try:
            if mode == "ok":
                self._answer(TOKEN)
            elif mode == "huge-declared":
                self.send_response(200)
                self.send_header("Content-Length", str(10 * 1024 * 1024))
                self.end_headers()
                self.wfile.write(b"{" * 1024)
            elif mode == "huge-chunked":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"[" * 65536
                for _ in range(200):  # 12.5 MiB unless the client hangs up first
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            elif mode == "trickle-body":
                self.send_response(200)
                self.send_header("Content-Length", str(TRICKLE_BYTES))
                self.end_headers()
                self._trickle(TOKEN.ljust(TRICKLE_BYTES))
            elif mode == "trickle-headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self._trickle(b"X-Slow: " + b"a" * (TRICKLE_BYTES - 10) + b"\r\n")
                self.wfile.write(b"Content-Length: %d\r\n\r\n%s" % (len(TOKEN), TOKEN))
            elif mode == "redirect":
                self.send_response(302)
                self.send_header("Location", "http://elsewhere.example/oauth2/token")
                self.send_header("Content-Length", "0")
                self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: what it should do

    def _answer(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self, data: bytes):
        for i in range(len(data)):
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()
            time.sleep(0.1)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    httpd.daemon_threads = True
    httpd.mode = "ok"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def client_of(server, **kwargs) -> InfoCaptionClient:
    kwargs.setdefault("max_attempts", 1)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    return InfoCaptionClient(url, "id", "secret", sleep=lambda s: None, **kwargs)


def test_a_normal_answer_is_read(server):
    assert client_of(server).token() == "t"


@pytest.mark.parametrize("mode", ["huge-declared", "huge-chunked"])
def test_an_answer_over_the_size_cap_is_refused(server, mode):
    server.mode = mode
    client = client_of(server, max_response_bytes=1024 * 1024)
    with pytest.raises(InfoCaptionRefused, match="over 1048576 bytes"):
        client.token()


def test_the_cap_leaves_room_for_an_answer_of_its_size(server):
    assert client_of(server, max_response_bytes=len(TOKEN)).token() == "t"


@pytest.mark.parametrize("mode", ["trickle-body", "trickle-headers"])
def test_a_trickling_server_runs_into_the_total_time_limit(server, mode):
    """Each byte comes well within the per-read timeout (5 s); the whole would take 6 s."""
    server.mode = mode
    client = client_of(server, timeout=(5.0, 5.0), total_timeout_s=1.0, max_attempts=2)
    with pytest.raises(InfoCaptionUnavailable, match="no answer within 1 s after 2 attempts"):
        client.token()


def test_a_trickling_server_is_waited_for_within_the_total_time_limit(server):
    server.mode = "trickle-body"
    assert client_of(server, timeout=(5.0, 5.0), total_timeout_s=30.0).token() == "t"


def test_redirects_are_not_followed(server):
    server.mode = "redirect"
    with pytest.raises(InfoCaptionRefused, match="302"):
        client_of(server).token()


@pytest.mark.parametrize("url", ["http://kommun.infocaption.example", "http://10.0.0.7:8080",
                                 "ftp://kommun.infocaption.example", "kommun.infocaption.example"])
def test_plain_http_to_another_host_is_refused(url):
    with pytest.raises(InfoCaptionRefused, match="INFOCAPTION_BASE_URL"):
        InfoCaptionClient(url, "id", "secret")


@pytest.mark.parametrize("url", ["https://kommun.infocaption.example", "http://127.0.0.1:8001",
                                 "http://localhost:8001", "http://[::1]:8001"])
def test_https_and_localhost_are_allowed(url):
    InfoCaptionClient(url, "id", "secret").close()


def test_demo_mode_allows_http_and_production_does_not():
    production = config_mod.load({
        "INFOCAPTION_BASE_URL": "http://kommun.infocaption.example", "INFOCAPTION_CLIENT_ID": "id",
        "INFOCAPTION_CLIENT_SECRET": "s", "DEMO": "",
        "INFOCAPTION_WEBHOOK_SECRETS": "whsec_dGVzdC1zZWNyZXQtb2YtY29tcGV0ZW5jZS1icmlkZ2U="})
    assert not production.demo
    with pytest.raises(InfoCaptionRefused):
        InfoCaptionClient.from_settings(production)
    InfoCaptionClient.from_settings(dataclasses.replace(production, demo=True)).close()

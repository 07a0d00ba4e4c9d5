"""Show the slow-client defence: /healthz with N clients trickling request bodies, bare and via nginx.

Starts `competence-bridge web` (one gunicorn worker, a few threads, on 127.0.0.1) with the
settings of the environment, then nginx with competence-bridge-proxy.conf in front of it, and
measures /healthz while slow clients send one body byte a second, first straight to gunicorn,
then through nginx. Needs nginx on the PATH (Debian: `apt-get install nginx-light`) and the
service's settings (DATABASE_URL, BROKER_URL, ... or DEMO=1). Prints one line per case.

    python deploy/nginx/check_slow_clients.py --clients 6 --threads 4
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def trickle(port: int, stop: threading.Event) -> None:
    """Announce a 1,000-byte webhook body and send it one byte a second."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /webhooks/infocaption HTTP/1.1\r\nHost: localhost\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            while not stop.wait(1.0):
                s.sendall(b" ")
    except OSError:
        pass  # the server gave up on us: fine


def measure(port: int, clients: int, probes: int) -> str:
    stop = threading.Event()
    threads = [threading.Thread(target=trickle, args=(port, stop), daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # let every slow client connect and start its body
    latencies, failures = [], 0
    for _ in range(probes):
        start = time.monotonic()
        try:
            ok = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        except requests.RequestException:
            ok = False
        latencies.append(time.monotonic() - start)
        failures += not ok
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=5)
    return (f"{failures}/{probes} /healthz probes failed (10 s timeout); "
            f"slowest {max(latencies) * 1000:.0f} ms, median {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms")


def nginx_conf(workdir: Path, listen: int, upstream: int) -> Path:
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body; proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi; uwsgi_temp_path {workdir}/uwsgi; scgi_temp_path {workdir}/scgi;
    upstream competence_bridge_web {{ server 127.0.0.1:{upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{listen};
        include {HERE / "competence-bridge-proxy.conf"};
    }}
}}
""")
    return conf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads (one worker)")
    parser.add_argument("--probes", type=int, default=6)
    args = parser.parse_args()

    web_port, proxy_port = free_port(), free_port()
    env = {**os.environ, "PORT": str(web_port), "WEB_HOST": "127.0.0.1",
           "WEB_CONCURRENCY": "1", "WEB_THREADS": str(args.threads)}
    web = subprocess.Popen([str(Path(sys.executable).parent / "competence-bridge"), "web"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    nginx = None
    with tempfile.TemporaryDirectory(prefix="cb-nginx-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o777)  # nginx's workers may run as another user
        try:
            wait_up(f"http://127.0.0.1:{web_port}/healthz")
            print(f"gunicorn alone (1 worker, {args.threads} threads), {args.clients} slow clients: "
                  + measure(web_port, args.clients, args.probes))
            nginx = subprocess.Popen(["nginx", "-c", str(nginx_conf(workdir, proxy_port, web_port)),
                                      "-p", str(workdir)], start_new_session=True)
            wait_up(f"http://127.0.0.1:{proxy_port}/healthz")
            print(f"behind nginx (competence-bridge-proxy.conf), {args.clients} slow clients: "
                  + measure(proxy_port, args.clients, args.probes))
        finally:
            for proc in (nginx, web):
                if proc is not None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=30)


if __name__ == "__main__":
    main()

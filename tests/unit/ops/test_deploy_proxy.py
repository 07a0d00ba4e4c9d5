"""Every shipped deployment puts the web process behind a request-buffering proxy with body and
header timeouts and the 64 KiB limit (deploy/README.md, "Slow clients")."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"


def nginx_directives(path: Path) -> dict[str, list[str]]:
    """Directive name -> values, comments dropped (a small reader for a flat config)."""
    found: dict[str, list[str]] = {}
    text = re.sub(r"#[^\n]*", "", path.read_text())
    for statement in re.findall(r"([a-z_0-9]+)\s+([^;{}]*);", text):
        found.setdefault(statement[0], []).append(statement[1].strip())
    return found


def test_the_nginx_proxy_buffers_requests_with_timeouts_and_the_body_limit():
    d = nginx_directives(DEPLOY / "nginx" / "competence-bridge-proxy.conf")
    assert d["proxy_request_buffering"] == ["on"]
    assert d["client_max_body_size"] == ["64k"]
    assert d["client_body_buffer_size"] == ["64k"]  # an accepted body stays in memory
    for timeout in ("client_body_timeout", "client_header_timeout"):
        [value] = d[timeout]
        assert re.fullmatch(r"\d+s", value) and int(value[:-1]) <= 30, (timeout, value)
    assert d["proxy_pass"] == ["http://competence_bridge_web"]
    assert d["error_page"] == ["413 = @too_large"]  # nginx's own 413 in the service's error shape
    assert '"code": 413' in (DEPLOY / "nginx" / "competence-bridge-proxy.conf").read_text()


def test_the_nginx_site_includes_the_proxy_and_the_web_listens_only_behind_it():
    site = nginx_directives(DEPLOY / "nginx" / "competence-bridge.conf")
    assert any(v.endswith("competence-bridge-proxy.conf") for v in site["include"])
    assert site["server"] == ["127.0.0.1:8000"]
    env = (DEPLOY / "systemd" / "competence-bridge.env.example").read_text()
    assert re.search(r"^WEB_HOST=127\.0\.0\.1$", env, re.MULTILINE)


def test_the_kubernetes_ingress_buffers_requests_and_the_controller_has_timeouts():
    [ingress] = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "ingress.yaml").read_text()) if d]
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == "64k"
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert backends == {"competence-bridge-web"}
    [controller] = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "ingress-nginx" / "controller-settings.yaml").read_text()) if d]
    for key in ("client-body-timeout", "client-header-timeout"):
        assert 0 < int(controller["data"][key]) <= 30, key
    # The Service stays inside the cluster: the ingress is the only way in.
    services = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "web.yaml").read_text())
                if d and d["kind"] == "Service"]
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)


def test_the_runbook_says_so():
    runbook = (DEPLOY / "README.md").read_text()
    assert re.search(r"^### Slow clients", runbook, re.MULTILINE)
    for name in ("nginx/competence-bridge.conf", "k8s/ingress.yaml", "k8s/ingress-nginx/controller-settings.yaml", "WEB_HOST"):
        assert name in runbook, name

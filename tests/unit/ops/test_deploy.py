"""deploy/ parses, agrees with the code (queue names, ports, metrics), and runs only real commands."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from service.platform import metrics
from service.platform.messaging import Topology
from service.platform.messaging import QueueStat
from service.ops import state
from service.ops.state import DatabaseState, StateCollector
from service.platform.metrics import DEFAULT_METRICS_PORTS

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
SYSTEMD_FILES = sorted((DEPLOY / "systemd").glob("*.service")) + sorted((DEPLOY / "systemd").glob("*.target"))
PREFIX = "competence_bridge"


def k8s_docs() -> list[dict]:
    return [doc for path in K8S_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in k8s_docs() if d["kind"] == kind}


def containers(doc: dict) -> list[dict]:
    spec = doc["spec"]["template"]["spec"]
    return spec["containers"]


def systemd_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file, keeping repeated keys (configparser would not)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: cannot read {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def invocations() -> list[tuple[str, list[str]]]:
    """Every `competence-bridge …` that the Procfiles, the units and the manifests run."""
    found = []
    for procfile in ("Procfile", "Procfile.demo"):
        for line in (ROOT / procfile).read_text().splitlines():
            if line.strip():
                role, _, command = line.partition(":")
                words = shlex.split(command)
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                    words.pop(0)  # an environment assignment before the command
                found.append((f"{procfile}:{role}", words))
    for path in SYSTEMD_FILES:
        for key, value in systemd_unit(path).get("Service", []):
            if key == "ExecStart":
                found.append((path.name, shlex.split(value)))
    for doc in k8s_docs():
        if doc["kind"] in ("Deployment", "Job"):
            for c in containers(doc):
                found.append((f"{doc['metadata']['name']}/{c['name']}", c["command"] + c.get("args", [])))
    return found


def test_every_manifest_and_rule_file_parses():
    assert {p.name for p in K8S_FILES} >= {"web.yaml", "worker.yaml", "worker-scaledobject.yaml",
                                           "scheduler.yaml", "release-job.yaml", "configmap.yaml"}
    kinds = sorted(d["kind"] for d in k8s_docs())
    assert kinds == sorted(["ConfigMap", "Secret", "Job", "Deployment", "Service", "Deployment",
                            "TriggerAuthentication", "ScaledObject", "Deployment",
                            "Ingress"])
    for doc in k8s_docs():
        assert doc["apiVersion"] and doc["metadata"]["labels"]["app.kubernetes.io/name"] == "competence-bridge"
    for path in (DEPLOY / "prometheus").glob("*.yml"):
        assert yaml.safe_load(path.read_text()), path.name
    json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())


def test_every_command_they_run_exists_in_the_cli_with_those_options():
    from workers.cli import main

    runs = invocations()
    assert {args[1] for _, args in runs if Path(args[0]).name == "competence-bridge"} >= {
        "migrate", "web", "worker", "scheduler"}
    for where, args in runs:
        assert Path(args[0]).name == "competence-bridge", f"{where} runs {args[0]}"
        sub, rest = args[1], args[2:]
        assert sub in main.commands, f"{where}: no sub-command {sub!r}"
        # Parses the options exactly as the command would, without running it.
        main.commands[sub].make_context(sub, list(rest))


def test_systemd_units_for_one_machine():
    names = {p.name for p in SYSTEMD_FILES}
    assert {"competence-bridge.target", "competence-bridge-release.service", "competence-bridge-web.service",
            "competence-bridge-worker@.service", "competence-bridge-scheduler.service"} <= names
    target = systemd_unit(DEPLOY / "systemd" / "competence-bridge.target")
    wanted = [u for key, value in target["Unit"] if key == "Wants" for u in value.split()]
    for unit in wanted:
        template = re.sub(r"@[^.]+\.", "@.", unit)
        assert template in names, unit
    for path in SYSTEMD_FILES:
        if path.suffix != ".service":
            continue
        unit = systemd_unit(path)
        service = dict(unit["Service"])
        assert service["EnvironmentFile"] == "/etc/competence-bridge/env"
        assert service["User"] == "competence-bridge"
        assert ("PartOf", "competence-bridge.target") in unit["Unit"]
        if path.name != "competence-bridge-release.service":
            assert ("Requires", "competence-bridge-release.service") in unit["Unit"]
            assert service["Restart"] == "always" and service["KillSignal"] == "SIGTERM"
    web = dict(systemd_unit(DEPLOY / "systemd" / "competence-bridge-web.service")["Service"])
    assert web["Environment"] == "PROMETHEUS_MULTIPROC_DIR=%t/competence-bridge-web"
    assert web["RuntimeDirectory"] == "competence-bridge-web"
    scheduler = dict(systemd_unit(DEPLOY / "systemd" / "competence-bridge-scheduler.service")["Service"])
    assert scheduler["Environment"] == f"METRICS_PORT={DEFAULT_METRICS_PORTS['scheduler']}"


def test_kubernetes_wiring():
    deployments, services = by_kind("Deployment"), by_kind("Service")
    web, worker, scheduler = (deployments[f"competence-bridge-{r}"] for r in ("web", "worker", "scheduler"))
    for d in deployments.values():
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        for c in containers(d):
            refs = [(k, v["name"]) for e in c["envFrom"] for k, v in e.items()]
            assert refs == [("configMapRef", "competence-bridge-config"), ("secretRef", "competence-bridge-secrets")]
    assert set(by_kind("ConfigMap")) == {"competence-bridge-config"}
    assert set(by_kind("Secret")) == {"competence-bridge-secrets"}
    assert by_kind("ConfigMap")["competence-bridge-config"]["data"]["QUEUE_PREFIX"] == PREFIX

    (service,) = services.values()
    assert service["spec"]["selector"].items() <= web["spec"]["template"]["metadata"]["labels"].items()
    (web_c,) = containers(web)
    assert web_c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web_c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {e["name"]: e["value"] for e in web_c["env"]}["PROMETHEUS_MULTIPROC_DIR"] in [
        m["mountPath"] for m in web_c["volumeMounts"]]
    for d, role in ((worker, "worker"), (scheduler, "scheduler")):
        (c,) = containers(d)
        port = int({e["name"]: e["value"] for e in c["env"]}["METRICS_PORT"])
        assert port == DEFAULT_METRICS_PORTS[role]
        assert int(d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) == port
        assert [p["containerPort"] for p in c["ports"]] == [port]
    assert int(web["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]) == \
        web_c["ports"][0]["containerPort"] == 8000

    (scaled,) = by_kind("ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "competence-bridge-worker"
    topo = Topology(PREFIX, amqp=True)
    queues = [t["metadata"]["queueName"] for t in scaled["spec"]["triggers"]]
    assert queues == [topo.queue("events").name, topo.queue("backfill").name]
    auth = set(by_kind("TriggerAuthentication"))
    assert {t["authenticationRef"]["name"] for t in scaled["spec"]["triggers"]} <= auth
    (release,) = by_kind("Job").values()
    assert containers(release)[0]["command"] == ["competence-bridge", "migrate"]
    assert release["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_rabbitmq_definitions_match_the_topology():
    defs = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    topo = Topology(PREFIX, amqp=True)
    exchanges = {e["name"]: (e["type"], e["durable"]) for e in defs["exchanges"]}
    assert exchanges == {topo.exchange.name: ("direct", True), topo.dead_letter_exchange.name: ("fanout", True)}
    queues = {q["name"]: q for q in defs["queues"]}
    assert set(queues) == {q.name for q in topo.queues}
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in defs["bindings"]}
    for queue in topo.queues:
        assert queues[queue.name]["durable"] is True
        assert queues[queue.name]["arguments"] == queue.queue_arguments
        assert (queue.exchange.name, queue.name, queue.routing_key) in bindings
    assert queues[f"{PREFIX}.events"]["arguments"]["x-delivery-limit"] == 20
    assert len(bindings) == len(topo.queues)


def exposed_metric_names(monkeypatch) -> set[str]:
    """Every sample name /metrics (web) or a metrics port (worker, scheduler) can show."""
    names = set()
    for value in vars(metrics).values():
        if hasattr(value, "_type") and hasattr(value, "_name"):
            base = value._name
            if value._type == "counter":
                names |= {f"{base}_total", f"{base}_created"}
            elif value._type == "histogram":
                names |= {f"{base}_bucket", f"{base}_count", f"{base}_sum", f"{base}_created"}

    class Pool:
        conninfo = "postgresql://unused"

        def connection(self, timeout):
            from contextlib import nullcontext

            return nullcontext(None)

    monkeypatch.setattr(state, "queue_stats", lambda s, u, t: [QueueStat("events", f"{PREFIX}.events", 0, 0)])
    monkeypatch.setattr(StateCollector, "_tenant_states", lambda self: {"default": DatabaseState(
        backfills=[{"id": 1, "course_id": 2, "competence_id": 3, "total": 1, "processed": 0,
                    "granted": 0, "already_held": 0, "not_passed": 0, "unmatched": 0,
                    "errors": 0}])})
    from service.platform import config

    for family in StateCollector(config.load({"DEMO": "1"}), Pool()).collect():
        names |= {s.name for s in family.samples}
        if family.type == "gauge":
            names.add(family.name)  # a gauge with no sample at this scrape can still have one
    return names


def test_alert_rules_use_only_metrics_that_exist_and_the_runbook_explains_each(monkeypatch):
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    known = exposed_metric_names(monkeypatch)
    assert {"cb_queue_messages", "cb_dead_letters_pending", "cb_processing_lag_seconds_bucket",
            "cb_dependency_up", "cb_backfill_results", "cb_results"} <= known
    runbook = (DEPLOY / "README.md").read_text()
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert len(alerts) >= 8
    for rule in alerts:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        used = set(re.findall(r"\bcb_[a-z_]+", rule["expr"]))
        assert used <= known, (rule["alert"], used - known)
        assert f"`{rule['alert']}`" in runbook, f"deploy/README.md does not explain {rule['alert']}"
    names = {r["alert"] for r in alerts}
    for topic in ("CompetenceBridgeEventsQueueGrowing", "CompetenceBridgeDeadLetters",
                  "CompetenceBridgeProcessingLag", "CompetenceBridgeNotReady"):
        assert topic in names


@pytest.mark.parametrize("section", [
    "Scale out", "Replay dead letters", "Rotate the webhook secret", "Restore after an outage", "Alerts",
])
def test_the_runbook_has_its_sections(section):
    runbook = (DEPLOY / "README.md").read_text()
    assert re.search(rf"^##+ {re.escape(section)}", runbook, re.MULTILINE), section

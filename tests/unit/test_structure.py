"""The house holds: imports point one way, and each boundary has one door.

Reads the source (no import is executed): every `import` and `from … import`, at any depth of
a module, is an arrow from that module to the project module it names.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("service", "workers", "bench")


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every project module a file imports (a name imported from a package that is a module
    of its own counts as that module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_among_the_project_modules():
    assert _circles(GRAPH) == []


def test_a_circle_would_be_found():
    graph = dict(GRAPH)
    graph["service.platform.config"] = graph["service.platform.config"] | {"service.app"}
    assert any("service.app" in c and "service.platform.config" in c for c in _circles(graph))


def test_the_service_never_imports_the_workers():
    wrong = {m: sorted(i for i in deps if i.startswith("workers"))
             for m, deps in GRAPH.items() if m.startswith("service")}
    assert {m: d for m, d in wrong.items() if d} == {}


def test_the_platform_imports_no_capability():
    capabilities = ("service.access", "service.catalog", "service.grants", "service.ingest",
                    "service.people", "service.ops", "service.demo", "service.app", "service.cli")
    wrong = {m: sorted(i for i in deps if i.startswith(capabilities))
             for m, deps in GRAPH.items() if m.startswith("service.platform")}
    assert {m: d for m, d in wrong.items() if d} == {}


def _imports_module(path: Path, top: str) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == top for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == top:
            return True
    return False


def test_kombu_and_amqp_only_in_the_messaging_module():
    users = sorted(m for m, path in MODULES.items() if not m.startswith("bench")
                   and (_imports_module(path, "kombu") or _imports_module(path, "amqp")))
    assert users == ["service.platform.messaging"]


def test_the_environment_is_read_only_in_config():
    """os.environ / os.getenv read settings in service/platform/config.py only (gunicorn's
    config module hands prometheus_client its multiprocess directory, and `web` passes the
    resolved DATABASE_URL to gunicorn's workers: writes, not settings)."""
    allowed = {"service.platform.config", "service.platform.gunicorn_conf", "service.cli"}
    readers = []
    for name, path in MODULES.items():
        if name.startswith("bench") or name in allowed:
            continue
        text = path.read_text()
        if "os.environ" in text or "os.getenv" in text:
            readers.append(name)
    assert readers == []
    cli = (ROOT / "service" / "cli.py").read_text()
    assert "os.environ.get" not in cli and "os.getenv" not in cli

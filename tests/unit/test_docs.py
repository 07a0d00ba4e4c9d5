"""docs/ is the reference the code points to: every page cited exists, and says what is cited."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# Not the project's own text: environments, data, build output.
SKIPPED_DIRS = {".venv", ".data", ".git", "__pycache__", "build", "dist", "htmlcov", "node_modules"}
SKIPPED_SUFFIXES = {".pyc", ".pyo", ".so", ".png", ".jpg", ".svg", ".gz", ".zip"}
CITED_PAGE = re.compile(r"(?<![\w.-])docs/([\w.-]+\.md)")
CITED_SECTION = re.compile(r'(?<![\w.-])docs/([\w.-]+\.md),\s+"([^"]+)"')
# A section name may run over two comment lines: join them again.
LINE_BREAK = re.compile(r"\s*\n\s*(?:--|#)?\s*")
CITED_RULES = re.compile(r"(?<![\w.-])docs/rules\.md, rules? (\d+(?:(?:, | and |-)\d+)*)")
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def project_files() -> list[Path]:
    """Every text file of the project that a person writes, docs/ included."""
    found = []
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        if any(p in SKIPPED_DIRS or p.endswith(".egg-info") or (p.startswith(".") and p != ".ci")
               for p in parts[:-1]):
            continue
        if path.is_file() and path.suffix not in SKIPPED_SUFFIXES and path.stat().st_size < 2_000_000:
            found.append(path)
    return found


def texts() -> dict[Path, str]:
    out = {}
    for path in project_files():
        out[path] = path.read_text(errors="replace")
    return out


def headings(page: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in page.read_text().splitlines() if line.startswith("#")]


def test_every_docs_page_the_project_cites_exists():
    cited = {(path, name) for path, text in texts().items() for name in CITED_PAGE.findall(text)}
    assert len(cited) > 40  # the code does point here
    missing = sorted(f"{path.relative_to(ROOT)}: docs/{name}" for path, name in cited
                     if not (DOCS / name).is_file())
    assert not missing, "cited pages that do not exist:\n" + "\n".join(missing)


def test_every_cited_section_is_a_heading_of_its_page():
    wrong = []
    for path, text in texts().items():
        for name, section in CITED_SECTION.findall(text):
            section = LINE_BREAK.sub(" ", section)
            page = DOCS / name
            if page.is_file() and section not in headings(page):
                wrong.append(f"{path.relative_to(ROOT)}: docs/{name}, \"{section}\"")
    assert not wrong, "cited sections that are not headings:\n" + "\n".join(wrong)


def test_the_rules_keep_their_numbers_and_every_cited_rule_exists():
    numbered = [int(h.split(".", 1)[0]) for h in headings(DOCS / "rules.md") if h[:1].isdigit()]
    assert numbered == list(range(1, 10))
    cited = set()
    for text in texts().values():
        for group in CITED_RULES.findall(text):
            for a, b in re.findall(r"(\d+)(?:-(\d+))?", group):
                cited.update(range(int(a), int(b or a) + 1))
    assert cited and cited <= set(numbered)


def test_no_file_cites_the_contract_outside_the_repository():
    this = Path(__file__).resolve()
    found = sorted(f"{path.relative_to(ROOT)}:{number}"
                   for path, text in texts().items() if path != this
                   for number, line in enumerate(text.splitlines(), start=1)
                   if "CONTRACT" in line or "/shared/" in line)
    assert not found, "point to docs/ instead:\n" + "\n".join(found)


def config_module() -> Path:
    """The module that reads the settings (the one that defines `load`)."""
    for path in sorted((ROOT / "service").rglob("config.py")):
        if any(isinstance(n, ast.FunctionDef) and n.name == "load" for n in ast.parse(path.read_text()).body):
            return path
    raise AssertionError("no settings module under service/")


def settings_read(source: str) -> set[str]:
    """Names of environment variables a module reads: env.get("X"), helper(env, "X"), REQUIRED."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            args = node.args
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "get" and args:
                candidates = args[:1]
            else:
                candidates = [b for a, b in zip(args, args[1:])
                              if isinstance(a, ast.Name) and a.id in ("env", "environ")]
            names.update(c.value for c in candidates
                         if isinstance(c, ast.Constant) and isinstance(c.value, str)
                         and ENV_NAME.fullmatch(c.value))
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "REQUIRED"
                                                  for t in node.targets):
            names.update(e.value for e in getattr(node.value, "elts", [])
                         if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return names


def test_every_setting_read_in_config_is_documented():
    names = settings_read(config_module().read_text())
    assert {"DATABASE_URL", "BROKER_URL", "DEMO", "TIME_ZONE", "INFOCAPTION_WEBHOOK_SECRETS"} <= names
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", (DOCS / "processes.md").read_text()))
    assert not sorted(names - documented), f"not in docs/processes.md: {sorted(names - documented)}"


@pytest.mark.parametrize("source, expected", [
    ('env.get("A_B")', {"A_B"}),
    ('_int(env, "PORT", 8000)', {"PORT"}),
    ('_flag(env, "DEMO")', {"DEMO"}),
    ('REQUIRED = ("X", "Y")', {"X", "Y"}),
    ('d.get("lower"); print("NOT_READ")', set()),
])
def test_the_settings_reader_finds_each_way_of_reading(source, expected):
    assert settings_read(source) == expected

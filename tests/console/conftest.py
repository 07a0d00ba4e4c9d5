"""The console in a real browser: Debian's chromium driven by Playwright, against the real
`web`, `worker` and `scheduler` processes (honcho on the Procfile), real PostgreSQL and
RabbitMQ, and the InfoCaption simulator serving a small organisation (docs/console.md).

The processes run once for the session; each test empties the database (`conn`) and sets up
what it needs through the domain functions.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from service.access.tokens import INTEGRATIONS, SETTINGS
from service.platform import config as config_mod
from tests.conftest import SECRET, SECRET_KEY, delete_queues, stop_group, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCREENSHOTS = ROOT / "docs" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

ADMIN, ADMIN_PASSWORD = "admin", "rätt-lösenord-1"
SETTINGS_ONLY, SETTINGS_PASSWORD = "tradgard", "bara-inställningar"

HLR, BRAND, GUIDE = 4711, 4712, 9001
ANNA, BO, CECILIA = "anna.andersson@kommun.se", "bo.ek@kommun.se", "cecilia.ostrom@kommun.se"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dataset():
    """Two courses and a guide; passed results of two employees and of one unknown email."""
    from service.demo.simulator import DataSet, SimCourse

    now = datetime.now(timezone.utc)
    data = DataSet(courses={
        HLR: SimCourse(HLR, "HLR vuxen", 14, True, False, "2024-01-10T08:00:00Z"),
        BRAND: SimCourse(BRAND, "Brandskydd grund", 18, True, False, "2024-02-10T08:00:00Z"),
        GUIDE: SimCourse(GUIDE, "Så loggar du in", 1, True, False, "2024-03-10T08:00:00Z"),
    })
    people = [(ANNA, "Anna", "Andersson", True), (BO, "Bo", "Ek", True),
              (CECILIA, "Cecilia", "Öström", True), ("david.nilsson@kommun.se", "David", "Nilsson", False)]
    for n, (email, first, last, passed) in enumerate(people):
        completed = now - timedelta(days=30 + n)
        data.add(HLR, {"resultId": f"r-hlr-{n}", "user": {"email": email, "firstName": first, "lastName": last},
                       "passed": passed, "score": 90 if passed else 20,
                       "completedAt": completed.isoformat(timespec="seconds"),
                       "changedAt": completed.isoformat(timespec="seconds")})
    return data


@pytest.fixture(scope="package")
def database_url():
    """A database of the console's tests alone: its web, worker and scheduler run while these
    tests do (package scope), and must never see, relay or refresh another test's data."""
    import psycopg

    from service.platform import db
    from service.platform.migrate import migrate
    from tests.conftest import ADMIN_URL

    name = f"cb_console_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with db.connect(url, autocommit=True) as conn:
        migrate(conn)
    yield url
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def conn(database_url):
    """The console's database emptied; the truncation is retried when it meets the running
    scheduler's or worker's locks in the other order (a deadlock PostgreSQL breaks)."""
    import psycopg

    from service.platform import db
    from tests.conftest import DOMAIN_TABLES

    with db.connect(database_url, autocommit=True) as c:
        for attempt in range(5):
            try:
                c.execute("TRUNCATE " + ", ".join(DOMAIN_TABLES) + " RESTART IDENTITY CASCADE")
                break
            except psycopg.errors.DeadlockDetected:
                if attempt == 4:
                    raise
        yield c


@pytest.fixture(scope="package")
def simulator():
    from service.demo.simulator import Simulator

    sim = Simulator(_dataset(), client_id="test", client_secret="test").start()
    yield sim
    sim.stop()


@pytest.fixture(scope="package")
def stack(database_url, broker_url, simulator, tmp_path_factory):
    """web, worker and scheduler under honcho, as the Procfile runs them; the base URL."""
    tmp = tmp_path_factory.mktemp("console")
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "QUEUE_PREFIX": f"cbconsole_{uuid.uuid4().hex[:10]}",
        "PORT": str(port),
        "INFOCAPTION_BASE_URL": simulator.url,
        "INFOCAPTION_CLIENT_ID": "test",
        "INFOCAPTION_CLIENT_SECRET": "test",
        "INFOCAPTION_WEBHOOK_SECRETS": SECRET,
        "SECRET_KEY": SECRET_KEY,
        "DATA_DIR": str(tmp / "data"),
        "METRICS_PORT": "0",
        "WEB_CONCURRENCY": "2",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("DEMO", None)
    log_path = tmp / "honcho.log"
    with open(log_path, "wb") as log_file:
        honcho = subprocess.Popen(
            [str(BIN / "honcho"), "start", "-f", "Procfile", "web", "worker", "scheduler"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://localhost:{port}"

    def ready():
        if honcho.poll() is not None:
            raise AssertionError(f"honcho exited early:\n{log_path.read_text()[-3000:]}")
        try:
            return requests.get(f"{base}/readyz", timeout=5).status_code == 200
        except requests.RequestException:  # not up yet, or slow on a busy machine
            return False

    wait_for(ready, timeout=120, interval=0.2, message="/readyz to answer 200")
    try:
        yield base
    finally:
        stop_group(honcho)
        delete_queues(config_mod.load(env))


@pytest.fixture
def org(conn, stack):
    """An emptied database with the catalog, a competence tree, two employees and two users."""
    from service.catalog import competences
    from service.console import users
    from service.people import employees

    for course_id, name, guide_type in ((HLR, "HLR vuxen", 14), (BRAND, "Brandskydd grund", 18),
                                        (GUIDE, "Så loggar du in", 1)):
        conn.execute("INSERT INTO courses (id, name, guide_type) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                     (course_id, name, guide_type))
    main = competences.create_competence(conn, {"name": "Vård och omsorg", "kind": "main_group"}, actor="test")
    group = competences.create_competence(conn, {"name": "Akut och säkerhet", "kind": "group",
                                                 "parent_id": main["id"]}, actor="test")
    hlr = competences.create_competence(conn, {"name": "HLR", "kind": "competence", "parent_id": group["id"],
                                               "default_valid_days": 60}, actor="test")
    fire = competences.create_competence(conn, {"name": "Brandskydd", "kind": "competence",
                                                "parent_id": group["id"], "default_valid_days": 1095},
                                         actor="test")
    staff = employees.create_employees(conn, [
        {"email": ANNA, "first_name": "Anna", "last_name": "Andersson"},
        {"email": BO, "first_name": "Bo", "last_name": "Ek"},
        {"email": "orjan.aberg@kommun.se", "first_name": "Örjan", "last_name": "Åberg"},
        {"email": "zelda.zorn@kommun.se", "first_name": "Zelda", "last_name": "Zorn"},
        {"email": "asa.alm@kommun.se", "first_name": "Åsa", "last_name": "Ärlig"},
    ], actor="test", tz="Europe/Stockholm")
    users.create_user(conn, ADMIN, ADMIN_PASSWORD, [INTEGRATIONS, SETTINGS])
    users.create_user(conn, SETTINGS_ONLY, SETTINGS_PASSWORD, [SETTINGS])
    return {"base": stack, "hlr": hlr, "fire": fire, "group": group, "main": main,
            "staff": {e["email"]: e["id"] for e in staff}}


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True,
                                  locale="sv-SE")
    context.set_default_timeout(30_000)  # a busy shared machine
    tab = context.new_page()
    yield tab
    context.close()


def sign_in(page, base: str, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Användarnamn").fill(username)
    page.get_by_label("Lösenord").fill(password)
    page.get_by_role("button", name="Logga in").click()
    page.wait_for_load_state()


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

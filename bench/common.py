"""What every part of the benchmark shares: its own database and queues, processes, ports.

Every run makes databases and queue prefixes of its own (named from one run id) on this
machine's PostgreSQL and RabbitMQ, and removes them when it is done, whatever happened.
"""
from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
from bench.servers import ADMIN_URL, BROKER_URL, HOST, SECRET  # noqa: E402,F401 - shared


def say(message: str) -> None:
    """Print progress with the time since the run started."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", flush=True)


_T0 = time.monotonic()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout}s")


# --- CPU accounting -----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_snapshot() -> dict:
    """CPU seconds used so far by every process (by pid: name, session), and the machine's.

    PostgreSQL backends are named by their database (`postgres: <db>`), so that the server's
    work for this run can be told from other clients' on a shared machine.
    """
    procs = {}
    databases = {}
    try:
        with admin() as a:
            databases = dict(a.execute("SELECT pid, datname FROM pg_stat_activity").fetchall())
    except psycopg.Error:
        pass
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        # field n of man 5 proc is fields[n - 3]: session (6), utime (14), stime (15)
        pid = int(entry.name)
        if pid in databases:
            name = f"postgres: {databases[pid] or '-'}"
        # keyed by pid and start time (field 22): a pid reused between two snapshots is another process
        procs[(pid, int(fields[19]))] = (name, int(fields[3]), (int(fields[11]) + int(fields[12])) / _TICK)
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    idle = cpu[3] + cpu[4]
    return {"procs": procs, "busy": (sum(cpu) - idle) / _TICK, "total": sum(cpu) / _TICK,
            "at": time.monotonic()}


def cpu_usage(before: dict, after: dict, sessions: dict[str, int]) -> dict:
    """CPU seconds between two snapshots, by component: our sessions by label, servers by name."""
    out: dict[str, float] = {}
    for pid, (name, session, secs) in after["procs"].items():
        used = secs - before["procs"].get(pid, (name, session, 0.0))[2]
        if used <= 0:
            continue
        label = next((k for k, v in sessions.items() if v == session), None)
        if label is None:
            if name in ("beam.smp", "erl_child_setup", "epmd", "inet_gethost"):
                label = "rabbitmq"
            elif name.startswith("postgres: cb_bench_"):
                label = "postgresql (bench databases)"
            elif name.startswith("postgres: "):
                label = "postgresql (other databases)"
            elif name.startswith("postgres"):
                label = "postgresql (server processes)"
            elif name == "wrk":
                label = "wrk"
            else:
                label = "other processes"
        out[label] = out.get(label, 0.0) + used
    wall = after["at"] - before["at"]
    out = {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}
    return {"wall_s": round(wall, 2), "machine_busy_s": round(after["busy"] - before["busy"], 2),
            "machine_capacity_s": round(after["total"] - before["total"], 2), "by_component": out}


def busy_pct(cpu: dict) -> int:
    """How busy the machine was (every process and the kernel), in % of a cpu_usage() span."""
    return round(100 * cpu["machine_busy_s"] / max(cpu["machine_capacity_s"], 1))


# --- databases --------------------------------------------------------------------------------


def admin() -> psycopg.Connection:
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)


def db_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def create_database(name: str, template: str | None = None) -> str:
    """Create a database (a copy of `template` when given) and return its URL."""
    with admin() as a:
        if template:
            _kick(a, template)
            a.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            a.execute(f'CREATE DATABASE "{name}"')
    return db_url(name)


def drop_database(name: str) -> None:
    with admin() as a:
        _kick(a, name)
        a.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _kick(a: psycopg.Connection, name: str) -> None:
    a.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One benchmark run: its id, scratch folder, and everything to remove at the end."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cb-bench-")))
    databases: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    profile_dir: Path | None = None

    def database(self, label: str, template: str | None = None) -> tuple[str, str]:
        name = f"cb_bench_{self.id}_{label}"
        self.databases.append(name)
        return name, create_database(name, template)

    def prefix(self, label: str) -> str:
        prefix = f"cbbench_{self.id}_{label}"
        self.prefixes.append(prefix)
        return prefix

    def env(self, database_url: str, prefix: str, **extra: str) -> dict[str, str]:
        """The environment of a service process of this run."""
        env = dict(os.environ)
        for var in ("PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY", "WEB_THREADS"):
            env.pop(var, None)
        env.update({
            "DATABASE_URL": database_url,
            "BROKER_URL": BROKER_URL,
            "QUEUE_PREFIX": prefix,
            "INFOCAPTION_BASE_URL": "http://127.0.0.1:9",
            "INFOCAPTION_CLIENT_ID": "bench",
            "INFOCAPTION_CLIENT_SECRET": "bench",
            "INFOCAPTION_WEBHOOK_SECRETS": SECRET,
            "SECRET_KEY": "bench-secret-key-of-the-console-at-least-32",
            "TIME_ZONE": "Europe/Stockholm",
            "METRICS_PORT": "0",
            "LOG_LEVEL": "INFO",
            "PYTHONPATH": str(ROOT),
            "SENTRY_DSN": "",
        })
        env.update(extra)
        return env

    def start(self, args: list[str], env: dict, log_name: str) -> subprocess.Popen:
        """Start a process of this run in its own process group, its output to a log file."""
        log = open(self.scratch / f"{log_name}.log", "ab")
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def log_tail(self, log_name: str, lines: int = 20) -> str:
        path = self.scratch / f"{log_name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen, timeout: float = 20.0) -> None:
        """Stop one process of this run (its group: gunicorn's workers too)."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc in self.procs:
            self.procs.remove(proc)

    @contextmanager
    def profiled(self, proc: subprocess.Popen, name: str, seconds: float, subprocesses: bool = False,
                 wall: bool = False):
        """Sample `proc` with py-spy while the block runs, when profiling is on.

        By default only the thread holding the GIL is sampled (where the CPU goes); `wall`
        samples the main thread's whole stack, waits included (where the time goes).
        """
        spy = None
        if self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            args = [str(BIN / "py-spy"), "record", "--pid", str(proc.pid), "--rate", "100",
                    "--duration", str(int(seconds) + 1), "--format", "raw", "--nonblocking",
                    "--idle" if wall else "--gil", "--output", str(self.profile_dir / f"{name}.txt")]
            if subprocesses:
                args.append("--subprocesses")
            spy = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            if spy is not None:
                try:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()

    def cleanup(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)
        from bench import rabbit

        for prefix in self.prefixes:
            for attempt in range(30):
                try:
                    rabbit.delete_prefix(prefix)
                    break
                except OSError as exc:  # the broker may be restarting
                    if attempt == 29:
                        print(f"could not delete the queues of {prefix}: {exc}", flush=True)
                    time.sleep(2)
                except Exception as exc:  # noqa: BLE001 - report and go on cleaning
                    print(f"could not delete the queues of {prefix}: {exc}", flush=True)
                    break
        for name in reversed(self.databases):
            for attempt in range(30):  # the shared server may be restarting (other people's fault tests)
                try:
                    drop_database(name)
                    break
                except psycopg.OperationalError as exc:
                    if attempt == 29:
                        print(f"could not drop database {name}: {exc}", flush=True)
                    time.sleep(2)
                except Exception as exc:  # noqa: BLE001
                    print(f"could not drop database {name}: {exc}", flush=True)
                    break
        shutil.rmtree(self.scratch, ignore_errors=True)

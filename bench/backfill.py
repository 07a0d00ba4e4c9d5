"""Part 3: a link's backfill over a course with a long history, next to only reading it.

    python -m bench.backfill serve --results N --port P   # the simulator with that course
    python -m bench.backfill read                         # the baseline: read every page, discard

The InfoCaption simulator (service/demo/simulator.py) runs in a process of its own and
serves one course with N historical results (employee k % 100,000 in a mixed case, 5 % by
people the organisation does not employ, 10 % failed, oldest first). The backfill is the real
one: `competence-bridge backfill --link L` (workers/backfill.py, the same code the backfill
worker runs), until the link is done, by one process and then (on a fresh database) by two
processes on the same link at once, which share its units as two backfill workers do. The baseline reads the same pages with the same client
and page size (InfoCaptionClient.results_page, 500 a page) and throws them away. Both run as
processes of the same shape against the same simulator; results per second = N / wall time.

`bench.run --parts 3 --backfill-without-fks` is an experiment, not the product: it drops the
foreign keys of `results` in the bench's copy of the database first, to measure what their
per-row checks cost the backfill (the report says so beside the figure).
"""
from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg import sql

from bench import data
from bench.common import BIN, HOST, Run, cpu_snapshot, cpu_usage, drop_database, free_port, say, wait_port

COURSE_ID = 300_000
COURSE_NAME = "Backfill course"
PAGE_SIZE = 500


def dataset(results: int):
    """The simulator's data: one course with `results` results, in the API's order."""
    from service.demo.simulator import DataSet, SimCourse, _Entry

    ds = DataSet()
    ds.courses[COURSE_ID] = SimCourse(COURSE_ID, COURSE_NAME, 14, True, False, "2020-01-01T00:00:00Z")
    rng = random.Random(f"{data.SEED}-backfill")
    start = datetime(2021, 1, 1, tzinfo=timezone.utc)
    step = timedelta(seconds=max(1, (5 * 365 * 86400) // max(results, 1)))
    entries = []
    for k in range(results):
        completed = start + k * step  # increasing: appended in the API's order
        if rng.random() < 0.05:
            email = f"extern{k}@partner.example"
        else:
            email = data.mixed_case(rng, f"employee{k % data.EMPLOYEES}@bench.example")
        passed = (k % 10) != 0
        stamp = completed.isoformat().replace("+00:00", "Z")
        payload = {"resultId": f"h-{k}", "user": {"email": email, "firstName": "Bench", "lastName": f"H{k}"},
                   "passed": passed, "score": 90 if passed else 20, "completedAt": stamp, "changedAt": stamp}
        entries.append(_Entry((completed, f"h-{k}"), completed, payload))
    ds.results[COURSE_ID] = entries  # already in order: no per-record insort
    return ds


def slicing_app(sim):
    """The simulator's app, serving a page without changedSince as a slice of the list.

    The stock handler filters all N entries for every page (O(N) a page: at 1,000,000 results
    the simulator alone would make reading take ~6 minutes). The answer is the same
    (checked in `serve`); every other route is the simulator's own.
    """
    from service.demo.simulator import SimulatorApp, _json

    class SlicingApp(SimulatorApp):
        def results(self, request, course_id):
            paging = self._paging(request)
            if "changedSince" in request.args or not isinstance(paging, tuple):
                return super().results(request, course_id)
            page, hits = paging
            with self.sim.lock:
                course = self.sim.data.courses.get(course_id)
                if course is None or course.deleted:
                    return super().results(request, course_id)
                entries = self.sim.data.results.get(course_id, [])
                total = len(entries)
                body = {"results": [e.payload for e in entries[(page - 1) * hits: page * hits]],
                        "hitsPerPage": hits, "totalHits": total,
                        "totalPages": (total + hits - 1) // hits, "currentPage": page}
            return _json(body)

    return SlicingApp(sim)


def serve(results: int, port: int) -> None:
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from service.demo.simulator import Simulator

    sim = Simulator(dataset(results), client_id="bench", client_secret="bench")  # as in Run.env
    stock, fast = sim.app, slicing_app(sim)
    token = sim._issue_token()
    for page in (1, 2, (results + PAGE_SIZE - 1) // PAGE_SIZE, 10**6):
        env = EnvironBuilder(path=f"/API/courses/{COURSE_ID}/results",
                             query_string={"page": page, "hitsPerPage": PAGE_SIZE},
                             headers={"Authorization": f"Bearer {token}"}).get_environ()
        if stock.results(Request(env), COURSE_ID).get_data() != fast.results(Request(env), COURSE_ID).get_data():
            raise SystemExit(f"the slicing simulator answers page {page} differently")
    sim.app = fast
    sim.serve_forever(HOST, port)


def read() -> None:
    """Read every page of the course with the service's client and discard it."""
    from service.platform import config as config_mod
    from service.infocaption.client import InfoCaptionClient

    client = InfoCaptionClient.from_settings(config_mod.load())
    course = {"id": COURSE_ID, "name": COURSE_NAME, "guide_type": 14}
    count = 0
    for page in client.result_pages(course, hits_per_page=PAGE_SIZE):
        count += page.received
    client.close()
    print(f"read {count} results", flush=True)


def _timed(run: Run, args: list[str], env: dict, label: str, timeout: float,
           sim=None) -> tuple[float, dict]:
    before = cpu_snapshot()
    proc = run.start(args, env, label)
    started = time.monotonic()
    last = before
    seen: dict = {}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with run.profiled(proc, label, timeout, wall=True):
        # Snapshots while it runs: its database backends exit with it (or when it closes its
        # pool, a moment before), taking their CPU counts along.
        while proc.poll() is None:
            if time.monotonic() - started > timeout:
                run.stop(proc)
                raise RuntimeError(f"{label} did not finish in {timeout:.0f}s")
            snap = cpu_snapshot()
            seen.update(snap["procs"])  # a process that exits keeps the last count it showed
            last = dict(snap, procs=seen)
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # before py-spy (a child too) ends
    cpu = cpu_usage(before, last, {label: proc.pid, "simulator": sim.pid if sim else -1})
    cpu["by_component"][label] = round(after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime, 2)
    run.procs.remove(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} exited with {proc.returncode}:\n{run.log_tail(label)}")
    return elapsed, cpu


def _database(run: Run, template: str, label: str, without_fks: bool) -> tuple[str, str, int, list[str]]:
    """A bench database with the course and its link (and, as an experiment, no FKs)."""
    name, url = run.database(label, template)
    dropped: list[str] = []
    with psycopg.connect(url) as conn:
        conn.execute(data.q("backfill_setup_course"), {"course_id": COURSE_ID, "name": COURSE_NAME})
        link_id = conn.execute(data.q("backfill_setup_link"), {"course_id": COURSE_ID}).fetchone()[0]
        if without_fks:
            dropped = [row[0] for row in conn.execute(data.q("backfill_result_foreign_keys"))]
            for constraint in dropped:
                conn.execute(sql.SQL("ALTER TABLE results DROP CONSTRAINT {}").format(sql.Identifier(constraint)))
            if not dropped or conn.execute(data.q("backfill_result_foreign_keys")).fetchall():
                raise RuntimeError(f"results' foreign keys were not dropped: {dropped}")
    return name, url, link_id, dropped


def measure(run: Run, template: str, *, results: int, without_fks: bool = False, timeout: float = 900,
            processes: tuple[int, ...] = (1, 2)) -> dict:
    """Read-only once, then the backfill by 1 and by 2 `competence-bridge backfill` processes
    working on the same link at once (each on a fresh database); the figure is the best."""
    port = free_port()
    sim = run.start([str(BIN / "python"), "-m", "bench.backfill", "serve", "--results", str(results),
                     "--port", str(port)], run.env("postgresql:///unused", "unused"), "simulator")
    out: dict = {"results": results, "page_size": PAGE_SIZE, "by_processes": {}}
    try:
        started = time.monotonic()
        wait_port(port, 600, sim)
        out["simulator_ready_s"] = round(time.monotonic() - started, 1)
        say(f"  backfill: simulator up with {results:,} results in {out['simulator_ready_s']}s; reading only")
        base = f"http://{HOST}:{port}"
        env = run.env("postgresql:///unused", run.prefix("backfill-read"), INFOCAPTION_BASE_URL=base)
        with run.profiled(sim, "backfill-sim-read", timeout):
            read_s, out["read_cpu"] = _timed(run, [str(BIN / "python"), "-m", "bench.backfill", "read"],
                                             env, "backfill-read", timeout, sim)
            out["read_s"] = round(read_s, 2)
        out["read_per_s"] = round(results / out["read_s"], 1)
        for n in processes:
            name, url, link_id, dropped = _database(run, template, f"backfill{n}", without_fks)
            if without_fks:
                out["experiment"] = {"dropped_foreign_keys": dropped}
            try:
                env = run.env(url, run.prefix(f"backfill{n}"), INFOCAPTION_BASE_URL=base)
                say(f"  backfill: read-only {out['read_per_s']:,.0f} results/s; now the backfill of "
                    f"link {link_id} by {n} process(es)")
                one = " ".join([str(BIN / "competence-bridge"), "backfill", "--link", str(link_id),
                                "--page-size", str(PAGE_SIZE)])
                # n processes on one link at once; the shell waits for each and fails if one did
                script = " ; ".join([f"{one} >/dev/null 2>&1 & p{i}=$!" for i in range(n)]
                                    + [" && ".join(f"wait $p{i}" for i in range(n))])
                label = "backfill-run"
                with run.profiled(sim, f"backfill-sim-{n}", timeout):
                    backfill_s, cpu = _timed(run, ["bash", "-c", script], env, label, timeout, sim)
                with psycopg.connect(url) as conn:
                    row = conn.execute(data.q("backfill_outcome"), {"link_id": link_id}).fetchone()
                fig = {"backfill_s": round(backfill_s, 2), "backfill_cpu": cpu,
                       "backfill_per_s": round(results / backfill_s, 1),
                       "outcome": dict(zip(("state", "total", "processed", "granted", "already_held",
                                            "not_passed", "unmatched", "errors", "grants"), row))}
                fig["ratio"] = round(fig["backfill_per_s"] / out["read_per_s"], 3)
                out["by_processes"][str(n)] = fig
                say(f"  backfill by {n}: {fig['backfill_per_s']:,.0f} results/s ({fig['ratio']} x), {fig['outcome']}")
            finally:
                drop_database(name)
                run.databases.remove(name)
        best = max(out["by_processes"], key=lambda k: out["by_processes"][k]["ratio"])
        out.update(out["by_processes"][best], processes=int(best))
    finally:
        run.stop(sim)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--results", type=int, required=True)
    s.add_argument("--port", type=int, required=True)
    sub.add_parser("read")
    args = parser.parse_args()
    if args.cmd == "serve":
        serve(args.results, args.port)
    else:
        read()


if __name__ == "__main__":
    sys.exit(main())

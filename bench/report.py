"""Write a run's results: a Markdown table for people, JSON for tools."""
from __future__ import annotations

import json
import math
from pathlib import Path

from bench.common import busy_pct


def _met(value, op: str, target: float):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value >= target if op == ">=" else value < target


def _fmt(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def rows(results: dict) -> list[dict]:
    """The headline figures: (key, measured, baseline, ratio or value)."""
    out = []
    ing = results.get("ingest")
    if ing:
        s, r, b = ing["service"], ing["reference"], ing["bare"]
        out.append({"key": "ingest", "measured": f"{_fmt(s['rps'])} req/s, p99 {_fmt(s['p99_us'] / 1000, 1)} ms",
                    "baseline": f"reference {_fmt(r['rps'])} req/s, p99 {_fmt(r['p99_us'] / 1000, 1)} ms; "
                                f"bare Flask {_fmt(b['rps'])} req/s, p99 {_fmt(b['p99_us'] / 1000, 1)} ms"
                                + (f"; unqueued {_fmt(ing['unqueued']['rps'])} req/s" if "unqueued" in ing else ""),
                    "value": ing["ratio_reference"]})
    w = results.get("worker")
    if w:
        out.append({"key": "worker_ceiling", "measured": f"{_fmt(w['worker']['events_per_s'])} events/s",
                    "baseline": f"ceiling {_fmt(w['ceiling']['events_per_s'])} events/s",
                    "value": w["ratio_ceiling"]})
        out.append({"key": "worker_naive", "measured": f"{_fmt(w['worker']['events_per_s'])} events/s",
                    "baseline": f"naive {_fmt(w['naive']['events_per_s'])} events/s",
                    "value": w["ratio_naive"]})
    bf = results.get("backfill")
    if bf:
        out.append({"key": "backfill", "measured": f"{_fmt(bf.get('backfill_per_s'))} results/s"
                                                   + (" (EXPERIMENT: results' foreign keys dropped)"
                                                      if bf.get("experiment") else ""),
                    "baseline": f"read-only {_fmt(bf.get('read_per_s'))} results/s",
                    "value": bf.get("ratio")})
    lat = results.get("latency")
    if lat:
        out.append({"key": "latency",
                    "measured": f"p50 {_fmt(lat['p50_ms'], 1)} ms, p99 {_fmt(lat['p99_ms'], 1)} ms "
                                f"({_fmt(lat['granted_seen'])}/{_fmt(lat['grant_webhooks'])} grants seen, "
                                f"{_fmt(lat['sent'])} sent in {_fmt(lat['send_s'], 1)} s)"
                                + _repeats(lat),
                    "baseline": f"{_fmt(lat['rate'])} webhooks/s for {_fmt(lat['seconds'])} s",
                    "value": lat["p99_ms"]})
    g = results.get("growth")
    if g:
        out.append({"key": "growth", "measured": f"{_fmt(g['full']['events_per_s'])} events/s with "
                                                 f"{_fmt(g['grants_before'])} grants",
                    "baseline": f"empty grants table {_fmt(g['empty']['events_per_s'])} events/s",
                    "value": g["ratio"]})
    rep = results.get("reports")
    if rep:
        for key, label in (("expiring", "report_expiring"), ("coverage", "report_coverage"),
                           ("employee_grants", "employee_grants")):
            t = rep["timings"][key]
            out.append({"key": label, "measured": f"p50 {_fmt(t['p50_ms'], 1)} ms, p95 {_fmt(t['p95_ms'], 1)} ms "
                                                  f"({t['n']} calls of `{t['path']}`)",
                        "baseline": f"{_fmt(rep['grants'])} grants", "value": t["p95_ms"]})
        for key in ("console_links", "console_employee", "console_expiring"):
            t = rep.get("console", {}).get(key)
            if t:  # the console's pages (docs/console.md), signed in, same data
                out.append({"key": key, "measured": f"p50 {_fmt(t['p50_ms'], 1)} ms, p95 {_fmt(t['p95_ms'], 1)} ms "
                                                    f"({t['n']} calls of `{t['path']}`)",
                            "baseline": f"{_fmt(rep['grants'])} grants", "value": t["p95_ms"]})
    fair = results.get("fairness")
    if fair and "during_backfill" in fair:
        d, b = fair["during_backfill"], fair["baseline"]
        out.append({"key": "fairness",
                    "measured": f"p50 {_fmt(d['p50_ms'], 1)} ms, p99 {_fmt(d['p99_ms'], 1)} ms "
                                f"({_fmt(d['granted_seen'])}/{_fmt(d['grant_webhooks'])} grants seen) while A's "
                                f"backfill stored {_fmt(d['backfill']['results_per_s'])} results/s "
                                f"(alone before: {_fmt(fair['backfill_alone']['results_per_s'])} results/s)",
                    "baseline": f"no backfill: p50 {_fmt(b['p50_ms'], 1)} ms, p99 {_fmt(b['p99_ms'], 1)} ms; "
                                f"{_fmt(d['rate'])} webhooks/s for {_fmt(d['seconds'])} s each",
                    "value": d["p99_ms"]})
    return out


def write(base: Path, results: dict, meta: dict, targets: dict) -> None:
    base.parent.mkdir(parents=True, exist_ok=True)
    table = rows(results)
    summary = []
    for row in table:
        label, op, target = targets[row["key"]]
        summary.append({**row, "figure": label, "target": f"{op} {target}",
                        "met": _met(row["value"], op, target)})
    doc = {"meta": meta, "summary": summary, "bounds": bounds(results, meta.get("cpus") or 2),
           "results": results}
    base.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=str) + "\n")

    lines = [f"# Benchmark run {meta['run']}{' (quick: not a result)' if meta['quick'] else ''}", "",
             f"{meta['finished_at']} · commit {meta['commit']}{' (uncommitted changes)' if meta['dirty'] else ''}"
             f" · {meta['cpus']} CPUs · load average at the end {meta['load_average_end']}"
             f" · {meta['duration_s']:.0f} s{' · profiled with py-spy' if meta['profiled'] else ''}", "",
             "| figure | measured | baseline (same run, same data) | ratio / value | target | met |",
             "|---|---|---|---|---|---|"]
    for row in summary:
        met = {True: "yes", False: "**no**", None: "–"}[row["met"]]
        lines.append(f"| {row['figure']} | {row['measured']} | {row['baseline']} | "
                     f"{_fmt(row['value'], 2 if row['key'] not in ('latency', 'fairness') else 1)} | {row['target']} | {met} |")
    if meta["errors"]:
        lines += ["", "**Parts that crashed:** " + "; ".join(f"part {k}: {v}" for k, v in meta["errors"].items())]
    lines += ["", "## Notes", ""]
    lines += _notes(results, meta.get("cpus") or 2)
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _pg(by: dict) -> float:
    """CPU of this run's PostgreSQL backends (older runs: all of PostgreSQL)."""
    return by.get("postgresql (bench databases)", by.get("postgresql", 0.0))


def _repeats(lat: dict) -> str:
    runs = lat.get("runs") or []
    if len(runs) < 2:
        return ""
    return (f"; the median of {len(runs)} runs by p99, whose p99 were "
            + ", ".join(f"{_fmt(r['p99_ms'], 1)}" for r in runs) + " ms")


def bounds(results: dict, cpus: int) -> dict:
    """What this machine allows, from the CPU each part's processes used per unit of work."""
    out = {}
    lat = results.get("latency")  # at the target rate: fixed costs are spread thinnest there
    if lat and lat.get("cpu"):
        by = lat["cpu"]["by_component"]
        per = (by.get("web", 0) + by.get("worker", 0) + by.get("rabbitmq", 0) + _pg(by)) / max(lat["sent"], 1)
        out["latency"] = {"cpu_ms_per_webhook": round(1000 * per, 3),
                          "max_rate_all_cores": round(cpus / per) if per else None,
                          "measured_at_rate": lat["rate"]}
    bf = results.get("backfill")
    if bf and bf.get("backfill_cpu"):
        by = bf["backfill_cpu"]["by_component"]
        per = (by.get("backfill-run", 0) + _pg(by) + by.get("simulator", 0)) / max(bf["results"], 1)
        best = cpus / per if per else None
        out["backfill"] = {"cpu_us_per_result": round(1e6 * per, 1),
                           "postgresql_us_per_result": round(1e6 * _pg(by) / max(bf["results"], 1), 1),
                           "backfill_process_us_per_result": round(1e6 * by.get("backfill-run", 0) / max(bf["results"], 1), 1),
                           "max_rate_all_cores": round(best) if best else None,
                           "best_possible_ratio": round(best / bf["read_per_s"], 2) if best else None,
                           "cores_busy": round(bf["backfill_cpu"]["machine_busy_s"] / bf["backfill_cpu"]["wall_s"], 2)}
    return out


def _notes(results: dict, cpus: int = 2) -> list[str]:
    notes = []
    ing = results.get("ingest")
    if ing:
        cpu = ing.get("cpu_ms_per_request", {})
        notes.append(
            "- **Ingest.** wrk, 1 thread, 32 connections, distinct webhooks signed just before each run; "
            f"{len(ing['service'].get('rounds_rps', [0]))} round(s) in which the four apps take turns, "
            f"service / reference in each: {ing.get('ratios_reference')} (the median is the ratio); "
            "gunicorn as `competence-bridge web` (2 workers x 8 threads, gthread, JSON access log but for accepted webhooks) for all "
            "four. *Reference* = verify the Standard Webhooks signature (same library), then publish the "
            "raw body to the same quorum queue with a kombu producer in `confirm_publish` mode (one "
            "connection per thread), 202 after the broker's confirm; no validation, metrics or logs. "
            "*Service* = the real endpoint (verify, validate, publish: a process's sender thread packs "
            "the events that gathered into one confirmed message, 202 after its confirm). *Unqueued* = the service's own app with "
            "a publisher that queues nothing (a bound, not a product). Non-2xx answers: "
            f"service {ing['service']['errors']}, reference {ing['reference']['errors']}, bare {ing['bare']['errors']}; "
            f"events on the queue after the run: service {ing['service'].get('queued_events', 0):,} in "
            f"{ing['service']['queued']:,} messages, reference {ing['reference'].get('queued_events', 0):,}.")
        if cpu and "unqueued" in ing:
            notes.append(
                f"- **What bounds ingest:** CPU per request (server + broker + wrk): service {cpu.get('service')} ms, "
                f"reference {cpu.get('reference')} ms, unqueued {cpu.get('unqueued')} ms, bare {cpu.get('bare')} ms. "
                f"The service's endpoint without its publish step reached {ing['unqueued']['rps']:,.0f} req/s, "
                f"{ing['unqueued_over_reference']} x the reference: anything that also queues each webhook "
                f"durably stays below that (bare Flask / reference this run: {ing['bare_over_reference']}).")
    w = results.get("worker")
    if w:
        notes.append(
            f"- **Worker.** {w['worker']['events']:,} events pre-filled (10 % failed, mixed-case emails); "
            "rate measured in the database between the first and the last transaction. Transactions: "
            f"worker {w['worker']['transactions']:,}, ceiling {w['ceiling']['transactions']:,}, naive "
            f"{w['naive']['transactions']:,} (naive stopped after {w['naive']['window_s']:.0f} s). "
            f"Outcome checked (results, statuses, grants): worker {w['worker'].get('correct')}, "
            f"ceiling {w['ceiling'].get('correct')}.")
    g = results.get("growth")
    if g:
        notes.append(f"- **Growth.** {g['grants_before']:,} grants generated set-based in {g['generate_s']} s "
                     "(every employee holds each of 100 competences no course grants); the same events "
                     "on an empty grants table and on it.")
        if "server" in g["full"] and "server" in g["empty"]:
            e, f = g["empty"]["server"], g["full"]["server"]
            notes.append(
                f"- **What grows with the grants:** WAL per event {e['wal_bytes_per_event']:,} B (empty) vs "
                f"{f['wal_bytes_per_event']:,} B (10 M), checkpoints during the run {e['checkpoints']} vs "
                f"{f['checkpoints']}, buffers written by backends {e['backend_buffer_writes']:,} vs "
                f"{f['backend_buffer_writes']:,}: new grants land on pages all over a unique index larger "
                "than shared_buffers (128 MB here), and the first change of a page after a checkpoint "
                "writes the whole page to the WAL (server-wide counters).")
    rep = results.get("reports")
    if rep:
        t = rep["timings"]
        notes.append(
            f"- **Reports.** {rep['grants']:,} grants ({rep['revoked']:,} revoked) as periods: 100,000 employees x "
            f"{rep['grants'] // 200_000} competences x 2 periods, generated set-based in {rep['generate_s']} s, the coverage summaries "
            f"rebuilt and folded in {rep['summaries_s']} s ({rep['summary_rows']['active_edges']:,} active edges, "
            f"{rep['summary_rows']['latest_grants']:,} latest-grant rows). Server time through the app (token "
            f"check, queries, JSON): expiring, one competence p50 {t['expiring_competence']['p50_ms']} ms, "
            f"p95 {t['expiring_competence']['p95_ms']} ms. Totals in X-Pagination: expiring "
            f"{t['expiring']['x_pagination']}; coverage {t['coverage']['x_pagination']}.")
        for label, plan in rep["plans"].items():
            notes += ["", f"Plan of {label}:", "", "```", plan, "```"]
    limits = bounds(results, cpus)
    lat = results.get("latency")
    if lat:
        if "latency" in limits:
            lim = limits["latency"]
            notes.append(
                f"- **What bounds latency at 1,000/s:** one webhook costs {lim['cpu_ms_per_webhook']} ms of CPU "
                f"(web + worker + RabbitMQ + this run's PostgreSQL while the sender ran at {lim['measured_at_rate']:,}/s; "
                f"the worker's backlog after that is not counted, so this is a lower bound), "
                f"so {cpus} cores carry at most ~{lim['max_rate_all_cores']:,} webhooks/s with nothing else "
                f"running (not even the sender)"
                + (f"; at {lim['measured_at_rate']:,}/s the queue in front of the web process grows for as long "
                   "as the sender runs, and so does every latency." if lim["max_rate_all_cores"]
                   and lim["max_rate_all_cores"] <= lim["measured_at_rate"] else
                   f"; {lim['measured_at_rate']:,}/s keeps the machine "
                   f"{busy_pct(lat['cpu'])} % busy "
                   "(every process and the kernel), where waits in front of the web process, for the GIL in "
                   "each of its processes and for the CPU decide the tail: the p99 moves with how fast this "
                   "shared machine runs at the time."))
        notes.append(f"- **Latency.** Open-loop sender at {lat['rate']:,}/s; answers: {lat['statuses']}; "
                     f"202 answer p50 {lat['answer_p50_ms']} ms, p99 {lat['answer_p99_ms']} ms; "
                     f"CPU seconds by component: {lat['cpu']['by_component']}."
                     + (" Every run (p50 / p99 / machine busy): " + "; ".join(
                         f"{r['p50_ms']} / {r['p99_ms']} ms / {r['machine_busy_pct']} %" for r in lat["runs"])
                        + "; the table gives the run with the median p99."
                        if len(lat.get("runs") or []) > 1 else ""))
    low = results.get("latency_sustained")
    if low:
        notes.append(f"- **Latency at a sustainable rate (context, not the target).** {low['rate']:,}/s for "
                     f"{low['seconds']} s: p50 {low['p50_ms']} ms, p99 {low['p99_ms']} ms, "
                     f"{low['granted_seen']:,}/{low['grant_webhooks']:,} grants seen; 202 answer p99 "
                     f"{low['answer_p99_ms']} ms.")
    bf = results.get("backfill")
    if bf:
        notes.append(
            f"- **Backfill.** One course with {bf['results']:,} results in the simulator (its own process; "
            f"pages of {bf['page_size']}), link to a competence no other course grants. Read-only = the "
            f"service's client reading every page and discarding it: {bf['read_s']} s. Backfill = "
            f"`competence-bridge backfill --link` until done, by 1 and by 2 processes at once on the "
            f"same link (each on a fresh database): "
            + "; ".join(f"{n}: {f['backfill_s']} s, {f['backfill_per_s']:,.0f} results/s, {f['ratio']} x"
                        for n, f in bf.get("by_processes", {}).items())
            + f". The table gives the best ({bf.get('processes', 1)}), outcome "
            f"{bf.get('outcome')}. CPU seconds during that backfill: {bf['backfill_cpu']['by_component']}; "
            f"during the read: {bf['read_cpu']['by_component']}.")
        if bf.get("experiment"):
            notes.append(
                f"- **Experiment, not the product:** the backfill ran with the foreign keys of `results` dropped "
                f"({', '.join(bf['experiment']['dropped_foreign_keys'])}), to measure what their per-row checks cost.")
        if "backfill" in limits:
            lim = limits["backfill"]
            notes.append(
                f"- **What bounds the backfill:** {lim['cpu_us_per_result']} µs of CPU per result "
                f"(PostgreSQL {lim['postgresql_us_per_result']} µs, the backfill process "
                f"{lim['backfill_process_us_per_result']} µs, the rest the simulator); the pages are stored as units that each process takes "
                f"whole, then the grants are decided in completion order ({lim['cores_busy']} cores busy on average). Even spread perfectly over {cpus} cores that is "
                f"~{lim['max_rate_all_cores']:,} results/s, {lim['best_possible_ratio']} x the read-only rate.")
    fair = results.get("fairness")
    if fair and "during_backfill" in fair:
        notes += _fairness_notes(fair)
    return notes


def _fairness_notes(fair: dict) -> list[str]:
    b, d = fair["baseline"], fair["during_backfill"]

    def parts(w: dict) -> str:
        return ", ".join(f"{k} p50 {v['p50']} / p99 {v['p99']} ms" for k, v in w["parts_ms"].items())

    def waits(w: dict) -> str:
        n = max(w["backend_waits"]["samples"], 1)
        out = []
        for process, by in sorted(w["backend_waits"]["by_process"].items()):
            top = sorted(by.items(), key=lambda kv: -kv[1])[:4]
            out.append(f"{process}: " + ", ".join(f"{what} {count / n:.2f}" for what, count in top))
        return "; ".join(out) or "none active"

    notes = [
        f"- **Fairness.** Two tenants on one deployment (web, `worker --queue events`, `worker --queue backfill`): "
        f"A (`default`) backfills a link over {fair['results']:,} historical results from its own simulator "
        f"process; B (`{fair['tenant_b']}`, own simulator, secret, tree, courses, links and employees) gets "
        f"webhooks at `/webhooks/infocaption/{fair['tenant_b']}` from the open-loop sender. Window without a "
        f"backfill: {b['sent']:,} sent, answers {b['statuses']}, machine {b['machine_busy_pct']} % busy; "
        f"window during A's backfill: {d['sent']:,} sent, answers {d['statuses']}, machine "
        f"{d['machine_busy_pct']} % busy; A's backfill stored its pages (phase units) for "
        f"{d['backfill'].get('running_s')} s of B's window, "
        f"{d['backfill']['processed_after'] - d['backfill']['processed_before']:,} results, and was "
        f"{d['backfill']['state_after']} (phase {d['backfill']['phase_after']}: the sweep decides the grants) "
        f"at the window's end, {d['backfill']['processed_after']:,} results stored in all; its results/s are "
        "over the units phase."
        + (f" {fair['note']}." if fair.get("note") else ""),
        f"- **Where B's latency goes** (sent -> 202 answer; answer -> start of the result worker's "
        f"transaction, i.e. the broker queue and the worker's batch wait; that start -> grant visible, "
        f"the database): without a backfill {parts(b)}; during it {parts(d)}. Deepest B events queue seen "
        f"(ready messages, sampled every 0.5 s): {b['queue_depth_max']} without, {d['queue_depth_max']} during. "
        f"Answers over 250 ms by the second of the window they were sent in (second: count): without "
        f"{b.get('answers_over_250ms_by_second')}; during {d.get('answers_over_250ms_by_second')}.",
        f"- **What the database backends did** (active backends of this run's database per sample, by "
        f"process and wait; CPU = running): without a backfill {waits(b)}; during it {waits(d)}.",
        f"- **CPU seconds by component** during B's window: without a backfill {b['cpu']['by_component']}; "
        f"during it {d['cpu']['by_component']}.",
    ]
    return notes

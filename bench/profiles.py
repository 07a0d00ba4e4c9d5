"""Summarise py-spy's collapsed stacks (`--format raw`): where the samples went.

    python -m bench.profiles FILE [--top N] [--idle]
    python -m bench.profiles FILE --under "Backfill._run_locked" [--depth 2]

Prints, per thread, the share of samples of the functions that were on the CPU (self) and of
those that were anywhere on the stack (inclusive). Idle frames (waiting in select/poll/recv or
on a lock) are left out unless --idle.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

_IDLE = re.compile(r"^(select|poll|epoll|_recv_into|recv_into|recv|wait|_wait_for_tstate_lock|"
                   r"acquire|sleep|accept|readinto|read|_read|get|wait_conn|drain_events|"
                   r"_selector|serve_forever|_worker|run|_run|_bootstrap|_bootstrap_inner)\b")


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarise(path: Path, top: int = 25, idle: bool = False) -> str:
    stacks = load(path)
    total = sum(n for _, n in stacks)
    if not total:
        return f"{path.name}: no samples"
    own: Counter = Counter()
    incl: Counter = Counter()
    threads: Counter = Counter()
    by_thread: dict[str, Counter] = defaultdict(Counter)
    for frames, n in stacks:
        leaf = frames[-1]
        if not idle and _is_idle(frames):
            continue
        thread = frames[0] if frames[0].startswith(("process", "thread", "Thread")) else "-"
        threads[thread] += n
        own[_short(leaf)] += n
        by_thread[thread][_short(leaf)] += n
        for f in set(_short(f) for f in frames):
            incl[f] += n
    busy = sum(threads.values())
    lines = [f"{path.name}: {total} samples, {busy} busy ({100 * busy / total:.0f}%)"]
    lines.append("  self (on CPU, % of busy samples):")
    for f, n in own.most_common(top):
        lines.append(f"    {100 * n / busy:5.1f}%  {f}")
    lines.append("  inclusive (% of busy samples):")
    for f, n in incl.most_common(top):
        lines.append(f"    {100 * n / busy:5.1f}%  {f}")
    return "\n".join(lines)


def _is_idle(frames: list[str]) -> bool:
    leaf = frames[-1].split(" ", 1)[0]
    return bool(_IDLE.match(leaf)) and "(threading.py" in frames[-1] or leaf in (
        "select", "poll", "epoll", "recv", "recv_into", "_recv_into", "wait", "acquire", "sleep",
        "accept", "wait_conn", "_wait_for_tstate_lock")


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"; "process 12:"cmd..."" -> "process"
    if frame.startswith("process "):
        return "process"
    m = re.match(r"^(.*?) \((?:.*/)?([^/:]+)(?::\d+)?\)$", frame)
    return f"{m.group(1)} ({m.group(2)})" if m else frame


def under(path: Path, frame: str, depth: int = 2, top: int = 25) -> str:
    """Where the samples below `frame` went: the next `depth` frames, by share (waits included)."""
    found: Counter = Counter()
    total = 0
    for frames, n in load(path):
        names = [_short(f) for f in frames]
        hits = [i for i, f in enumerate(names) if f.startswith(frame)]
        if not hits:
            continue
        total += n
        rest = names[hits[0] + 1:hits[0] + 1 + depth]
        found[" > ".join(rest) or "(itself)"] += n
    lines = [f"{path.name}: {total} samples under {frame}"]
    for key, n in found.most_common(top):
        lines.append(f"    {100 * n / max(total, 1):5.1f}%  {key}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--idle", action="store_true")
    parser.add_argument("--under", help="break down the samples below this function")
    parser.add_argument("--depth", type=int, default=2)
    args = parser.parse_args()
    for f in args.files:
        print(under(f, args.under, args.depth, args.top) if args.under else summarise(f, args.top, args.idle))


if __name__ == "__main__":
    main()

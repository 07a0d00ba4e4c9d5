"""An independent reference model of the rules (docs/rules.md), and a random event stream.

The model knows nothing of the service's SQL: it keeps results, employees, links and grants
in dictionaries and applies docs/rules.md in plain Python. The model check feeds the
same stream to the service and to the model and compares the grants.

Semantics shared with the service (documented in docs/RELIABILITY.md):
- events are applied in batches; the results one batch decides are decided one by one in
  completion order (ties broken by the smaller result id), each seeing the grants the earlier
  ones made;
- a grant is a period and is never changed: a pass on a day no period covers starts a grant
  from that day if it overlaps no period; a pass within the competence's renewal window before
  the end of the period covering its day starts the next period the day after it ends, if that
  overlaps none; otherwise it starts nothing. A result that is the evidence of a grant of the
  competence starts nothing more;
- a result id seen again is decided again only when its content changed and it is not older.
"""
from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def norm(email: str) -> str:
    return unicodedata.normalize("NFC", email).strip().casefold()


@dataclass
class Result:
    id: str
    course: int
    email: str
    passed: bool
    completed: datetime
    changed: datetime
    status: str = "received"


@dataclass
class Model:
    competences: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)  # id -> (days, window)
    links: set[tuple[int, int]] = field(default_factory=set)  # (course, competence)
    employees: set[str] = field(default_factory=set)  # normalised emails
    results: dict[str, Result] = field(default_factory=dict)
    webhooks: set[str] = field(default_factory=set)
    # (email, competence) -> the periods, each (first day, last day or None, result id), by first day
    grants: dict[tuple[str, int], list[tuple[date, date | None, str]]] = field(default_factory=dict)

    # --- the stream's operations ----------------------------------------------------------

    def results_batch(self, events: list[dict]) -> None:
        """A batch of course.completed events (dicts of the queued shape)."""
        changed: dict[str, Result] = {}
        for e in events:
            if e["webhook_id"] in self.webhooks:
                continue
            self.webhooks.add(e["webhook_id"])
            r = e["result"]
            new = Result(r["id"], e["course"]["id"], norm(r["email"]), r["passed"],
                         datetime.fromisoformat(r["completed_at"]), datetime.fromisoformat(e["timestamp"]))
            old = changed.get(new.id) or self.results.get(new.id)
            if old is not None:
                same = (old.course, old.email, old.passed, old.completed) == (new.course, new.email, new.passed, new.completed)
                if same or new.changed < old.changed:
                    continue
            changed[new.id] = new
        self.results.update(changed)
        self.decide(list(changed.values()))

    def employee_created(self, email: str) -> None:
        self.employees.add(norm(email))
        self.decide([r for r in self.results.values() if r.status == "unmatched" and r.email == norm(email)])

    def link_created(self, course: int, competence: int) -> None:
        self.links.add((course, competence))
        # the backfill decides every stored result of the course again
        self.decide([r for r in self.results.values() if r.course == course])

    def link_deleted(self, course: int, competence: int) -> None:
        self.links.discard((course, competence))  # its grants stay

    def competence_deleted(self, competence: int) -> None:
        self.competences.pop(competence, None)
        self.links = {(c, k) for c, k in self.links if k != competence}
        self.grants = {key: g for key, g in self.grants.items() if key[1] != competence}

    # --- the rules ------------------------------------------------------------------------

    def decide(self, results: list[Result]) -> None:
        earning: list[tuple[Result, int]] = []
        for r in sorted(results, key=lambda r: (r.completed, r.id)):
            linked = sorted(k for c, k in self.links if c == r.course)
            if not r.passed:
                r.status = "failed"
            elif r.email not in self.employees:
                r.status = "unmatched"
            elif not linked:
                r.status = "no_link"
            else:
                r.status = "granted"
                earning += [(r, k) for k in linked]
        for r, k in earning:  # in completion order
            periods = self.grants.setdefault((r.email, k), [])
            if any(rid == r.id for _, _, rid in periods):
                continue  # seen before: it changes nothing
            days, window = self.competences[k]
            made = next_period(r.completed.astimezone(STOCKHOLM).date(), days, window, periods)
            if made is not None:
                periods.append((*made, r.id))
                periods.sort(key=lambda p: p[0])
            elif not periods:
                del self.grants[(r.email, k)]


def next_period(day: date, days: int | None, window: int | None,
                 periods: list[tuple[date, date | None, str]]) -> tuple[date, date | None] | None:
    """The period a pass on `day` starts, or None (docs/rules.md, rule 3)."""
    covering = [end for start, end, _ in periods if start <= day and (end is None or day <= end)]
    if covering:
        if None in covering or window is None:
            return None
        end = max(covering)
        if (end - day).days > window:
            return None
        first = end + timedelta(days=1)
    else:
        first = day
    last = None if days is None else first + timedelta(days=days)
    for start, end, _ in periods:
        if (last is None or start <= last) and (end is None or end >= first):
            return None  # it would overlap a period held
    return first, last


# --- the random stream ----------------------------------------------------------------------


def stream(seed: int, n: int, *, courses: int = 12, competences: int = 16, emails: int = 1500):
    """Yield ("setup", {...}) once, then operations: ("results", [events]), ("employee", email),
    ("link", (course, competence)), ("unlink", (course, competence)), ("delete_competence", id)."""
    rng = random.Random(seed)
    course_ids = [5000 + i for i in range(courses)]
    comp_ids = list(range(100, 100 + competences))
    comps = {}
    for k in comp_ids:
        days = rng.choice([None, 30, 365, 730, 1095])
        comps[k] = (days, rng.choice([0, 10, 60, 180, days]) if rng.random() < 0.4 else None)
    pool = [f"person.{i:05d}@kommun.example" for i in range(emails)]
    existing = [e for e in pool if rng.random() < 0.6]
    links = {(c, k) for c in course_ids for k in rng.sample(comp_ids, 2)}
    yield "setup", {"courses": course_ids, "competences": comps, "employees": existing, "links": sorted(links)}
    alive_comps = set(comp_ids)
    created = set(existing)
    sent: list[dict] = []
    seq = 0
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    made = 0
    while made < n:
        roll = rng.random()
        if roll < 0.90:
            batch = []
            for _ in range(rng.randint(1, 60)):
                seq += 1
                if sent and rng.random() < 0.05:  # the same delivery again
                    batch.append(dict(rng.choice(sent)))
                    continue
                if sent and rng.random() < 0.08:  # the same result, changed (or not) later
                    prev = rng.choice(sent)
                    r = dict(prev["result"], passed=rng.random() < 0.8)
                    e = dict(prev, result=r, webhook_id=f"w-{seq}",
                             timestamp=(datetime.fromisoformat(prev["timestamp"]) + timedelta(minutes=rng.randint(-30, 600))).isoformat())
                else:
                    email = rng.choice(pool) if rng.random() < 0.95 else f"stranger.{rng.randint(0, 999)}@elsewhere.example"
                    email = _vary(rng, email)
                    completed = base + timedelta(seconds=rng.randint(0, 2 * 365 * 86400))
                    if rng.random() < 0.1:
                        completed = completed.replace(hour=23, minute=rng.randint(0, 59))
                    e = {
                        "type": "course.completed",
                        "timestamp": (completed + timedelta(minutes=5)).isoformat(),
                        "webhook_id": f"w-{seq}",
                        "course": {"id": rng.choice(course_ids), "name": "Kurs", "guide_type": 14},
                        "result": {"id": f"r-{seq}", "email": email, "first_name": None, "last_name": None,
                                   "passed": rng.random() < 0.85, "score": None,
                                   "completed_at": completed.isoformat()},
                    }
                sent.append(e)
                batch.append(e)
            made += len(batch)
            yield "results", batch
        elif roll < 0.95:
            missing = [e for e in pool if e not in created]
            if missing:
                email = rng.choice(missing)
                created.add(email)
                made += 1
                yield "employee", _vary(rng, email)
        elif roll < 0.98:
            pair = (rng.choice(course_ids), rng.choice(sorted(alive_comps)))
            if pair not in links and alive_comps:
                links.add(pair)
                made += 1
                yield "link", pair
        elif roll < 0.995:
            if links:
                pair = rng.choice(sorted(links))
                links.discard(pair)
                made += 1
                yield "unlink", pair
        elif len(alive_comps) > 4:
            k = rng.choice(sorted(alive_comps))
            alive_comps.discard(k)
            links = {(c, x) for c, x in links if x != k}
            made += 1
            yield "delete_competence", k


def _vary(rng: random.Random, email: str) -> str:
    roll = rng.random()
    if roll < 0.2:
        return email.upper()
    if roll < 0.3:
        return f"  {email}\t"
    return email

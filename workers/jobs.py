"""A periodic job of the scheduler: a name, how often, and what to run."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Job:
    """`run()` for the platform's jobs; `run(tenant)` once for each active tenant when
    `per_tenant` (docs/tenants.md, "The scheduler")."""

    name: str
    interval_s: float
    run: Callable[..., object]
    next_at: float = 0.0
    per_tenant: bool = False

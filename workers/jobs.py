"""A periodic job of the scheduler: a name, how often, and what to run."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Job:
    name: str
    interval_s: float
    run: Callable[[], object]
    next_at: float = 0.0

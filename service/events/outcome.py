"""What one delivery attempt gave (docs/events.md, "Delivery")."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Outcome:
    """Success, the HTTP or SMTP status (if any) and why it failed."""

    ok: bool
    status: int | None = None
    error: str | None = None

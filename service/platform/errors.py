"""Refusals of the domain functions, which the HTTP edge maps to 404, 409 and 422."""
from __future__ import annotations

from dataclasses import field


class AdminError(Exception):
    """A request the rules refuse; `errors` says which field and why."""

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class NotFound(AdminError):
    """The addressed thing does not exist."""


class Conflict(AdminError):
    """The change clashes with what exists (a duplicate, children left)."""


class Invalid(AdminError):
    """The request is well-formed but the rules refuse it."""

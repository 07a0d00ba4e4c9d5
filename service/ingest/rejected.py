"""Webhooks answered 4xx, kept for ops."""
from __future__ import annotations

import psycopg

from service.platform.paging import Page, page_of


def _rejected(row: dict) -> dict:
    body = row["body"]
    return {**{k: row[k] for k in ("id", "received_at", "webhook_id", "status", "reason", "errors",
                                  "headers")},
            "body": None if body is None else bytes(body).decode("utf-8", "backslashreplace"),
            "body_bytes": None if body is None else len(body)}


def list_rejected_webhooks(conn: psycopg.Connection, *, status: int | None, limit: int,
                           offset: int) -> Page:
    """Webhooks answered 4xx and kept, newest first; the body as text, bad bytes escaped."""
    page = page_of(conn, "rejected_webhooks", {"status": status}, limit, offset)
    page.items = [_rejected(r) for r in page.items]
    return page

"""The course catalog as admins see it: published courses, never guides."""
from __future__ import annotations

import psycopg

from service.catalog.guides import COURSE_GUIDE_TYPES
from service.platform.paging import Page, like_pattern, page_of


def list_courses(conn: psycopg.Connection, *, q: str | None, limit: int, offset: int) -> Page:
    """Published courses (never guides), by name, optionally containing `q`."""
    params = {"guide_types": sorted(COURSE_GUIDE_TYPES),
              "pattern": like_pattern(q) if q else None}
    return page_of(conn, "admin_courses", params, limit, offset)

"""Which InfoCaption guides are courses, and the statuses a course can have."""
from __future__ import annotations

COURSE_GUIDE_TYPES = frozenset({14, 18})  # 14 Kurs, 18 FysiskKurs; everything else is a guide
COURSE_STATUSES = ("published", "unpublished", "deleted")


def is_course(guide_type: int) -> bool:
    """Tell whether a guide type is a course that may be linked."""
    return guide_type in COURSE_GUIDE_TYPES

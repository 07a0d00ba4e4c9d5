"""The model check at full size: 100,000 random events through the service and the reference."""
from __future__ import annotations

import pytest

from service.platform import db
from tests.chaos.conftest import record
from tests.chaos.test_faults import reset
from tests.integration.test_model_check import run_model_check


@pytest.mark.timeout(1200)
def test_model_check_with_100000_events(database_url):
    reset(database_url)
    with db.connect(database_url) as conn:
        conn.autocommit = True
        counts = run_model_check(conn, 100_000, seed=2026)
    record("model check: 100,000 random events vs reference model", **{
        "events sent": counts["events"], "processed": counts["events"], "lost": counts["missing"],
        "duplicated": counts["extra"], "grants": counts["grants"],
        "notes": (f"grants identical ({counts['different']} differ); {counts['employees']} employees added later, "
                  f"{counts['links']} links created, {counts['unlinks']} deleted, "
                  f"{counts['competences_deleted']} competences deleted; unmatched {counts['unmatched']} = model"),
    })

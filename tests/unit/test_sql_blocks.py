"""The named SQL blocks beside the code: loading, and a fragment shared by two statements."""
from __future__ import annotations

import pytest

from service.platform import db


def test_an_include_line_is_replaced_by_the_named_block():
    fragment = db.q("grant_classified")
    for name in ("upsert_results", "evaluate_results"):
        text = db.q(name)
        assert "-- include:" not in text
        assert fragment in text  # the grant step is written once and used by both
    # Both end by reading what the shared step granted.
    assert db.q("upsert_results").rstrip().endswith("FROM granted;")
    assert db.q("evaluate_results").rstrip().endswith("FROM granted;")


def test_an_include_of_an_unknown_block_fails_at_load(tmp_path, monkeypatch):
    (tmp_path / "a.sql").write_text("-- name: whole\nSELECT 1\n-- include: nowhere\n")
    monkeypatch.setattr(db, "SQL_ROOTS", (tmp_path,))
    db.queries.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="nowhere"):
            db.queries()
    finally:
        db.queries.cache_clear()

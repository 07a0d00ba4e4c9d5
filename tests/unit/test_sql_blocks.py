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


def test_the_grant_statements_call_the_rules_of_migrations_0007_and_0009_instead_of_restating_them():
    for name in ("upsert_results", "evaluate_results"):
        assert "result_status(" in db.q(name)
        assert "CASE WHEN NOT" not in db.q(name)  # the classification, stated in result_status
        assert "result_outcome(" in db.q(name)
    grant_step = db.q("grant_classified")
    for rule in ("valid_from(", "grant_period(", "revocation_bars("):
        assert rule in grant_step
    assert "renewal_window_days -" not in grant_step and "valid_to + 1" not in grant_step  # grant_period
    # A backfill grants through the same grant step, and classifies through the same statement.
    assert grant_step in db.q("grant_stored_results")
    assert db.q("classify_stored") in db.q("classify_results")
    assert db.q("classify_stored") in db.q("evaluate_results")
    assert "course_status_at(" in db.q("refresh_course_status")
    for name, text in db.queries().items():
        assert "AT TIME ZONE" not in text, f"{name} computes a date itself; valid_from states it"
        assert "FROM course_status_changes" not in text, f"{name}: course_status_at states it"
        assert "v.revoked_at >=" not in text, f"{name}: revocation_bars states it"
        assert "WHEN revoked_at IS NOT NULL THEN" not in text, f"{name}: grant_status states it"

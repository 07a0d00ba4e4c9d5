"""Exports: whole filtered lists as CSV (Swedish Excel) and XLSX, streamed (docs/admin-api.md)."""
from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import datetime, timezone

import openpyxl
import pytest

from tests.integration.api.conftest import add_course, add_employee, add_grant, add_tree

pytestmark = pytest.mark.integration


def _grants(conn, employees: int, competences: int, *, result_id_prefix: str = "r") -> dict:
    """employees x competences grants, set-based; returns the tree."""
    tree = add_tree(conn)
    conn.execute("INSERT INTO competences (parent_id, name, kind, default_valid_days)"
                 " SELECT %s, 'K' || g, 'competence', 365 FROM generate_series(2, %s) g",
                 (tree["group"], competences))
    conn.execute("INSERT INTO employees (email, email_normalized, first_name, last_name)"
                 " SELECT 'e' || g || '@kommun.se', 'e' || g || '@kommun.se', 'Åsa', 'Öberg'"
                 " FROM generate_series(1, %s) g", (employees,))
    conn.execute("INSERT INTO grants (employee_id, competence_id, valid_from, valid_to, source, course_id, result_id)"
                 " SELECT e.id, c.id, date '2026-01-01' + (e.id %% 300)::int,"
                 "        date '2027-01-01' + (e.id %% 300)::int, 'webhook', 4711,"
                 "        %s || '-' || e.id || '-' || c.id"
                 "   FROM employees e CROSS JOIN competences c WHERE c.kind = 'competence'",
                 (result_id_prefix,))
    return tree


def _csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM: Excel reads å, ä, ö right
    text = body.decode("utf-8-sig")
    lines = text.split("\r\n")
    assert lines[-1] == ""  # every row ends with CRLF
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def test_grants_as_csv_are_the_whole_filtered_list_in_swedish_excel_dialect(conn, api):
    add_course(conn, 4711)
    tree = _grants(conn, 150, 2)  # 300 grants: more than the largest page (100)
    r = api.get("/api/v1/grants?format=csv")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = r.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="grants-') and disposition.endswith('.csv"')
    assert "X-Pagination" not in r.headers
    rows = _csv_rows(r.data)
    header = rows[0]
    assert header[0] == "id"
    assert {"employee_id", "employee_email", "competence_id", "competence_name", "valid_from",
            "valid_to", "status"} <= set(header)  # the grant row's fields, names a person reads
    assert len(rows) == 1 + 300
    first = dict(zip(header, rows[1]))
    assert first["valid_from"] == "2026-01-02" and first["valid_to"] == "2027-01-02"
    assert first["result_id"] == f"r-1-{tree['leaf']}" and first["link_id"] == ""
    # The filter applies to the file as to the pages, and Accept: text/csv asks for the same.
    one = api.get(f"/api/v1/grants?competence_id={tree['leaf']}", headers={"Accept": "text/csv"})
    assert one.status_code == 200 and one.mimetype == "text/csv"
    only = _csv_rows(one.data)
    column = only[0].index("competence_id")
    assert len(only[1:]) == 150 and {row[column] for row in only[1:]} == {str(tree["leaf"])}
    # JSON stays the default and stays paged.
    page = api.get("/api/v1/grants?page_size=10")
    assert page.mimetype == "application/json" and len(page.get_json()) == 10
    assert json.loads(page.headers["X-Pagination"])["total"] == 300


def test_a_file_format_that_does_not_exist_is_refused(conn, api):
    r = api.get("/api/v1/grants?format=pdf")
    assert r.status_code == 422
    assert "format" in r.get_json()["errors"]["query"]


def test_cells_that_a_spreadsheet_would_run_as_formulas_are_guarded(conn, api):
    add_course(conn, 4711)
    tree = add_tree(conn)
    emp = add_employee(conn, "anna@kommun.se")
    add_grant(conn, emp, tree["leaf"], result_id='=HYPERLINK("http://x.example","klicka")')
    other = conn.execute("INSERT INTO competences (parent_id, name, kind) VALUES (%s, 'B', 'competence')"
                         " RETURNING id", (tree["group"],)).fetchone()["id"]
    add_grant(conn, emp, other, result_id="-2+3")
    rows = _csv_rows(api.get("/api/v1/grants?format=csv").data)
    result_ids = [dict(zip(rows[0], row))["result_id"] for row in rows[1:]]
    assert result_ids == ["'=HYPERLINK(\"http://x.example\",\"klicka\")", "'-2+3"]
    # XLSX: text is written as text cells, which spreadsheet programs never evaluate.
    book = openpyxl.load_workbook(io.BytesIO(api.get("/api/v1/grants?format=xlsx").data), read_only=True)
    sheet = book.worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    column = values[0].index("result_id")
    assert [v[column] for v in values[1:]] == ['=HYPERLINK("http://x.example","klicka")', "-2+3"]
    raw = [c for c in list(book.worksheets[0].iter_rows())[1] if c.value is not None]
    assert all(c.data_type != "f" for c in raw)


def test_grants_as_xlsx_with_types_a_spreadsheet_understands(conn, api):
    add_course(conn, 4711)
    _grants(conn, 60, 2)
    r = api.get("/api/v1/grants?format=xlsx&page=3&page_size=5")  # a file is never one page
    assert r.status_code == 200
    assert r.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert r.headers["Content-Disposition"].endswith('.xlsx"')
    book = openpyxl.load_workbook(io.BytesIO(r.data), read_only=True)
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    assert rows[0][0] == "id" and {"employee_id", "competence_id", "status"} <= set(rows[0])
    assert len(rows) == 1 + 120
    first = dict(zip(rows[0], rows[1]))
    assert first["id"] == 1 and first["valid_from"] == datetime(2026, 1, 2)  # a date cell
    assert isinstance(first["created_at"], str) and first["created_at"][10] == "T"  # with offset


def test_the_unmatched_report_as_csv(conn, api):
    add_course(conn, 1)
    for rid, email in (("r-1", "Nobody@Kommun.se"), ("r-2", "=cmd@evil.example"), ("r-3", "nobody@kommun.se")):
        conn.execute(
            "INSERT INTO results (id, course_id, email, email_normalized, passed, completed_at, status, source)"
            " VALUES (%s, 1, %s, lower(%s), true, %s, 'unmatched', 'webhook')",
            (rid, email, email, datetime(2026, 11, 29, 12, tzinfo=timezone.utc)))
    rows = _csv_rows(api.get("/api/v1/unmatched?format=csv").data)
    assert rows[0] == ["email", "results", "course_ids", "last_completed_at"]
    assert [r[:3] for r in rows[1:]] == [["'=cmd@evil.example", "1", "1"], ["nobody@kommun.se", "2", "1"]]
    filtered = _csv_rows(api.get("/api/v1/unmatched?format=csv&email=NOBODY@kommun.se").data)
    assert [r[0] for r in filtered[1:]] == ["nobody@kommun.se"]


def test_an_export_needs_the_permission_of_its_list(conn, client, make_token):
    from service.access.auth import SETTINGS

    token = make_token("settings-only", [SETTINGS])
    r = client.get("/api/v1/grants?format=csv", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    assert client.get("/api/v1/grants?format=csv").status_code == 401


def _peak_while_reading(request) -> tuple[int, int, int]:
    """Make the request and read its answer chunk by chunk; return (bytes, lines, peak memory)."""
    size = lines = 0
    tracemalloc.start()
    try:
        response = request()
        assert response.status_code == 200
        for chunk in response.response:
            size += len(chunk)
            lines += chunk.count(b"\r\n")
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return size, lines, peak


def test_a_large_csv_export_is_streamed_not_built_in_memory(conn, api):
    add_course(conn, 4711)
    _grants(conn, 1000, 100)  # 100,000 grants
    size, lines, peak = _peak_while_reading(lambda: api.get("/api/v1/grants?format=csv", buffered=False))
    assert lines == 1 + 100_000
    assert size > 15_000_000
    # The rows as Python objects take more than 50 MB, the file itself 16 MB; streamed, what
    # is held at once is a few thousand rows (about 5 MB, whatever the number of rows).
    assert peak < 8_000_000, f"peak {peak:,} bytes while exporting {size:,}"


def test_a_large_xlsx_export_is_written_row_by_row(conn, api):
    add_course(conn, 4711)
    _grants(conn, 250, 100)  # 25,000 grants
    tracemalloc.start()
    try:
        response = api.get("/api/v1/grants?format=xlsx", buffered=False)
        assert response.status_code == 200
        data = io.BytesIO()
        for chunk in response.response:
            data.write(chunk)  # the test keeps the file (a few MB) to read it back below
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = data.tell()
    # Row by row, what is held beside the file is about 3 MB, whatever the number of rows.
    assert peak < size + 8_000_000, f"peak {peak:,} bytes for a file of {size:,}"
    book = openpyxl.load_workbook(data, read_only=True)
    assert book.worksheets[0].max_row == 1 + 25_000

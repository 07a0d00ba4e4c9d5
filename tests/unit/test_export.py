"""The export writers one by one (service/platform/export.py): the CSV dialect, the formula
guard, the XLSX cells and sheets."""
from __future__ import annotations

import io
from datetime import date, datetime, timezone

import openpyxl
import pytest

from service.platform import export


@pytest.mark.parametrize("value, text", [
    (None, ""), (True, "true"), (False, "false"), (17, "17"), (-5, "-5"),
    (date(2026, 12, 1), "2026-12-01"),
    (datetime(2026, 12, 1, 10, 30, tzinfo=timezone.utc), "2026-12-01T10:30:00+00:00"),
    ([1, 2, 3], "1,2,3"), ("Åsa Öberg", "Åsa Öberg"),
    ("=1+1", "'=1+1"), ("+46701234567", "'+46701234567"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("a=b", "a=b"),
])
def test_a_cell_as_csv_text(value, text):
    assert export.csv_text(value) == text


def test_csv_for_swedish_excel():
    rows = [{"a": "x;y", "b": 'sa "hej"', "c": None}, {"a": "rad\nbrytning", "b": 1, "c": [4, 5]}]
    body = b"".join(export.csv_chunks(["a", "b", "c"], rows))
    assert body == ('\ufeffa;b;c\r\n"x;y";"sa ""hej""";\r\n"rad\nbrytning";1;4,5\r\n').encode("utf-8")


def test_csv_goes_out_in_chunks_of_rows(monkeypatch):
    monkeypatch.setattr(export, "CSV_ROWS_A_CHUNK", 10)
    chunks = list(export.csv_chunks(["n"], ({"n": i} for i in range(25))))
    assert [c.count(b"\r\n") for c in chunks] == [11, 10, 5]  # the header rides with the first


def _book(chunks) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(b"".join(chunks)), read_only=True)


def test_xlsx_cells_keep_their_types_and_text_is_never_a_formula():
    rows = [{"id": 1, "day": date(2026, 12, 1), "at": datetime(2026, 12, 1, 10, tzinfo=timezone.utc),
             "text": "=HYPERLINK(\"x\")", "ok": True, "ids": [1, 2], "none": None, "old": date(1, 1, 1)}]
    book = _book(export.xlsx_chunks(list(rows[0]), rows, "grants"))
    sheet = book.worksheets[0]
    assert sheet.title == "grants"
    header, row = list(sheet.iter_rows(values_only=True))
    assert header == tuple(rows[0])
    assert row == (1, datetime(2026, 12, 1), "2026-12-01T10:00:00+00:00", '=HYPERLINK("x")', True,
                   "1,2", None, "0001-01-01")


def test_a_long_xlsx_goes_on_in_the_next_sheet_with_its_header(monkeypatch):
    monkeypatch.setattr(export, "XLSX_ROWS_A_SHEET", 3)
    book = _book(export.xlsx_chunks(["n"], ({"n": i} for i in range(7)), "grants"))
    assert [s.title for s in book.worksheets] == ["grants", "grants (2)", "grants (3)"]
    assert [[r[0] for r in s.iter_rows(values_only=True)] for s in book.worksheets] == [
        ["n", 0, 1, 2], ["n", 3, 4, 5], ["n", 6]]


def test_an_empty_list_is_a_file_with_its_header():
    assert b"".join(export.csv_chunks(["a", "b"], [])) == "\ufeffa;b\r\n".encode()
    book = _book(export.xlsx_chunks(["a", "b"], [], "grants"))
    assert list(book.worksheets[0].iter_rows(values_only=True)) == [("a", "b")]

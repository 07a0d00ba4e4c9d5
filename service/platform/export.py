"""Exports: a whole filtered list as a CSV or XLSX file, streamed (docs/admin-api.md, "Exports").

One decorator serves every list: `@exportable(blp, RowSchema, "grants")` between
`@blp.arguments(...)` and `@blp.response(...)`. A request for a file (`?format=csv`,
`?format=xlsx`, or `Accept: text/csv`) calls the same view with a window that has no end; the
view's `page_of` then hands back a generator over a server-side cursor instead of one page, and
the rows go out as they are read. Nothing holds the whole list: the CSV is written a thousand
rows at a time, the XLSX is written row by row (XlsxWriter's constant_memory mode) to a
temporary file that is then sent in chunks.
"""
from __future__ import annotations

import csv
import inspect
import io
import json
import logging
import tempfile
from contextlib import ExitStack
from datetime import date, datetime
from functools import wraps
from typing import Iterable, Iterator

import marshmallow as ma
import xlsxwriter
from flask import Response, request
from marshmallow import fields, validate

from service.platform.api import Query, readable_dates, refusals
from service.platform.web import services

log = logging.getLogger(__name__)

CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
JSON = "application/json"
FORMATS = ("json", "csv", "xlsx")
CSV_ROWS_A_CHUNK = 1000
FILE_CHUNK_BYTES = 64 * 1024
# One worksheet holds 1,048,576 rows; a longer export goes on in the next sheet, header again.
XLSX_ROWS_A_SHEET = 1_048_575
# A text cell starting with one of these is read as a formula by spreadsheet programs (and a
# tab or carriage return can hide one); in a CSV it gets a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportQuery(Query):
    """The query of a list that can also be had as a file (`?format=`)."""

    format = fields.String(
        validate=validate.OneOf(FORMATS),
        metadata={"description": "`csv` or `xlsx`: the whole filtered list as a file "
                                 "(`Accept: text/csv` does the same as `csv`); `json` (the "
                                 "default): one page"})


class WholeList:
    """Pagination parameters that ask for every row: no page size, from the first."""

    page = 1
    page_size = None
    first_item = 0
    item_count = None


def requested(format_: str | None) -> str | None:
    """Return 'csv' or 'xlsx' when the request asks for a file, else None (JSON)."""
    if format_ is not None:
        return None if format_ == "json" else format_
    best = request.accept_mimetypes.best_match([JSON, CSV, XLSX])
    return {CSV: "csv", XLSX: "xlsx"}.get(best)


def exportable(blp, schema: type[ma.Schema], filename: str):
    """Let a paged list view answer the whole list as CSV or XLSX too.

    The columns are the fields of `schema` (the list's row schema), in its order. The view
    below the pagination and transaction decorators is called directly with a connection held
    until the file is sent.
    """
    columns = columns_of(schema)
    content = {CSV: {"schema": {"type": "string"}},
               XLSX: {"schema": {"type": "string", "format": "binary"}}}

    def decorator(func):
        view = inspect.unwrap(func)  # the domain call, below @paginate and @transaction

        @wraps(func)
        def wrapper(*args, format=None, **kwargs):
            kind = requested(format)
            if kind is None:
                return func(*args, **kwargs)
            return _export(view, args, kwargs, columns, kind, filename)

        return blp.doc(responses={200: {"content": content}})(wrapper)

    return decorator


def _export(view, args, kwargs, columns: list[str], kind: str, filename: str) -> Response:
    return file_response(
        lambda conn: view(conn, *args, pagination_parameters=WholeList(), **kwargs),
        columns, kind, filename)


def columns_of(schema: type[ma.Schema]) -> list[str]:
    """The columns of a file: the fields of a list's row schema, in its order."""
    return [field.data_key or name for name, field in schema().fields.items()]


def file_response(rows_of, columns: list[str], kind: str, filename: str) -> Response:
    """Answer the rows `rows_of(conn)` gives as a CSV or XLSX file, streamed.

    The API's lists (`exportable`) and the console's download links (docs/console.md) both
    come here, so a file is the same whichever asked for it.
    """
    settings = services().settings
    stack = ExitStack()
    try:
        conn = stack.enter_context(services().pool.connection())
        readable_dates(conn)
        with refusals():
            rows = rows_of(conn)
    except BaseException as exc:
        stack.__exit__(type(exc), exc, exc.__traceback__)
        raise
    body = csv_chunks(columns, rows) if kind == "csv" else xlsx_chunks(columns, rows, filename)

    def stream() -> Iterator[bytes]:
        # The connection (and its transaction, which the server-side cursor lives in) is given
        # back when the file is sent, or when the client goes away (the generator is closed).
        with stack:
            yield from body

    today = datetime.now(settings.tz).date().isoformat()
    response = Response(stream(), mimetype=CSV if kind == "csv" else XLSX)
    if kind == "csv":
        response.headers["Content-Type"] = f"{CSV}; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}-{today}.{kind}"'
    response.call_on_close(stack.close)  # also when the body was never read
    return response


def csv_text(value) -> str:
    """One CSV cell: ISO dates and times, lists joined by commas, text guarded against formulas."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    elif not isinstance(value, str):
        return str(value)
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_chunks(columns: list[str], rows: Iterable[dict]) -> Iterator[bytes]:
    """The rows as CSV for Swedish Excel: UTF-8 with BOM, `;` between cells, CRLF, a header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(columns)
    for n, row in enumerate(rows, start=1):
        writer.writerow([csv_text(row.get(c)) for c in columns])
        if n % CSV_ROWS_A_CHUNK == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def xlsx_chunks(columns: list[str], rows: Iterable[dict], sheet: str) -> Iterator[bytes]:
    """The rows as an XLSX workbook, written row by row to a temporary file, then sent."""
    with tempfile.TemporaryFile() as out:
        book = xlsxwriter.Workbook(out, {
            "constant_memory": True,      # each row is flushed to disk once the next one starts
            "strings_to_formulas": False,  # text is text: never a formula, whatever it starts with
            "strings_to_urls": False,
            "strings_to_numbers": False,
        })
        header = book.add_format({"bold": True})
        day = book.add_format({"num_format": "yyyy-mm-dd"})
        sheets = 0
        worksheet, line = None, XLSX_ROWS_A_SHEET

        for row in rows:
            if line >= XLSX_ROWS_A_SHEET:
                sheets += 1
                worksheet = book.add_worksheet(sheet[:25] if sheets == 1 else f"{sheet[:25]} ({sheets})")
                worksheet.write_row(0, 0, columns, header)
                line = 0
            line += 1
            for col, name in enumerate(columns):
                _xlsx_cell(worksheet, line, col, row.get(name), day)
        if worksheet is None:
            book.add_worksheet(sheet[:25]).write_row(0, 0, columns, header)
        book.close()
        out.seek(0)
        while chunk := out.read(FILE_CHUNK_BYTES):
            yield chunk


def _xlsx_cell(worksheet, line: int, col: int, value, day_format) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        worksheet.write_boolean(line, col, value)
    elif isinstance(value, int) and abs(value) < 2**53:
        worksheet.write_number(line, col, value)
    elif isinstance(value, date) and not isinstance(value, datetime) and 1900 <= value.year <= 9999:
        worksheet.write_datetime(line, col, value, day_format)
    else:
        # Times keep their offset as ISO text (a spreadsheet time has no zone); text is
        # written as a string cell, which spreadsheet programs never evaluate.
        worksheet.write_string(line, col, csv_text(value) if not isinstance(value, str) else value)

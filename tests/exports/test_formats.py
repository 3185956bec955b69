"""The file formats: an XLSX written in pieces by separate writers (as separate
jobs write it, the state passed through JSON) is one valid workbook that
openpyxl and zipfile read back; CSV cells a spreadsheet would run are defused,
keys are written exactly."""

import io
import json
import zipfile
from datetime import datetime
from decimal import Decimal

import openpyxl
import pytest
from django.utils import timezone

from exports.formats import MONEY, NUMBER, VERBATIM, WHEN, Column, CsvWriter, ExportTooLarge, XlsxWriter

COLUMNS = [Column("Order number"), Column("Placed at", WHEN), Column("Amount", MONEY), Column("Quantity", NUMBER),
           Column("Key", VERBATIM)]
PLACED = timezone.make_aware(datetime(2026, 11, 2, 9, 30, 15))


def _rows(start: int, n: int) -> list[list]:
    return [[f"T{i:04d}", PLACED, Decimal("12.50"), i, f"=KEY<{i}>&\x01"] for i in range(start, start + n)]


def test_xlsx_written_by_three_writers_is_one_workbook():
    # given: the first writer begins, each later one resumes from the JSON state
    writer = XlsxWriter(COLUMNS)
    data = writer.begin() + writer.rows(_rows(0, 3))
    for start in (3, 6):
        writer = XlsxWriter(COLUMNS, state=json.loads(json.dumps(writer.state)))
        data += writer.rows(_rows(start, 3))
    data += writer.end()
    # then: a sound zip
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert "xl/worksheets/sheet1.xml" in archive.namelist()
    # and a workbook with typed cells, the header bold and frozen
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("Order number", "Placed at", "Amount", "Quantity", "Key")
    assert rows[1] == ("T0000", datetime(2026, 11, 2, 9, 30, 15), 12.5, 0, "=KEY<0>&")
    assert [row[0] for row in rows[1:]] == [f"T{i:04d}" for i in range(9)]
    assert sheet["A1"].font.b is True
    assert sheet.freeze_panes == "A2"
    assert sheet["B2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert sheet["C2"].number_format == "0.00"
    assert sheet["E2"].data_type == "s"  # text, never a formula


def test_xlsx_refuses_more_rows_than_a_sheet_holds():
    # given: a writer at Excel's last row
    writer = XlsxWriter(COLUMNS)
    writer.begin()
    writer.state["row"] = 1_048_576
    writer.rows(_rows(0, 1))
    # when / then
    with pytest.raises(ExportTooLarge):
        writer.rows(_rows(1, 1))


def test_csv_defuses_formulas_in_text_but_keeps_keys_exact():
    # given
    writer = CsvWriter(COLUMNS)
    # when
    text = (writer.begin() + writer.rows([["=HYPERLINK(1)", PLACED, Decimal("1.00"), 2, "-KEY+1"],
                                          ["@SUM", None, None, None, "=K"]]) + writer.end()).decode()
    # then
    assert text == ("\ufeffOrder number,Placed at,Amount,Quantity,Key\r\n"
                    "'=HYPERLINK(1),2026-11-02 09:30:15,1.00,2,-KEY+1\r\n"
                    "'@SUM,,,,=K\r\n")

"""The two file formats of an export, written a chunk of rows at a time: CSV,
and XLSX assembled here on the standard library's zlib.

Why XLSX is not written with XlsxWriter (constant_memory) or openpyxl
(write_only): both finish the file in the process that started it (the rows
go to a temporary file, the zip's directory is written at close), so an XLSX
could neither go to the browser while the rows are read nor be spread over
short RQ jobs (a worker's job must end within a minute: deliveries go first,
and a deploy's SIGTERM waits 75 s). An XLSX is a zip of a few small fixed XML
files and one sheet that grows. Here each chunk of sheet rows is deflated on
its own and flushed to a byte boundary (``Z_SYNC_FLUSH``), so chunks deflated
by different jobs join into one valid deflate stream; the sheet's CRC and
sizes follow its data (a zip data descriptor), and what must survive from one
chunk to the next (CRC, sizes, offset, row number) is ``state``, a small dict
the export row keeps. Strings are inline (no shared-string table to hold in
memory), never formulas.

CSV text cells that a spreadsheet would run as a formula (starting with = + -
@, a tab or a carriage return) get a leading apostrophe (OWASP's advice for
CSV injection: a buyer chooses their email). The key itself is written as it
is: an owner re-importing exported keys needs them exact.
"""

from __future__ import annotations

import csv
import io
import re
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from xml.sax.saxutils import escape

from django.utils import timezone

TEXT, VERBATIM, WHEN, MONEY, NUMBER = "text", "verbatim", "when", "money", "number"
# Excel's last row: a sheet cannot hold more (the header takes one).
XLSX_MAX_ROWS = 1_048_576 - 1


@dataclass(frozen=True)
class Column:
    header: str
    kind: str = TEXT


def _local(value: datetime) -> datetime:
    # Spreadsheets have no time zones: the shop's local time, as the admin shows it.
    return timezone.localtime(value).replace(tzinfo=None) if timezone.is_aware(value) else value


# --- CSV --------------------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value, kind: str) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _local(value).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    if kind == TEXT and text.startswith(_FORMULA_START):
        return "'" + text
    return text


class CsvWriter:
    """UTF-8 with a byte-order mark (Excel opens Chinese product names right), CRLF rows."""

    content_type = "text/csv; charset=utf-8"
    extension = "csv"

    def __init__(self, columns: list[Column], state: dict | None = None):
        self.columns = columns
        self.state = state or {}

    def _encode(self, rows) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        kinds = [c.kind for c in self.columns]
        writer.writerows([_csv_cell(v, k) for v, k in zip(row, kinds, strict=True)] for row in rows)
        return buffer.getvalue().encode()

    def begin(self) -> bytes:
        return "\ufeff".encode() + self._encode([[c.header for c in self.columns]])

    def rows(self, rows: list[list]) -> bytes:
        return self._encode(rows)

    def end(self) -> bytes:
        return b""


# --- XLSX -------------------------------------------------------------------------------------------------

_EPOCH = datetime(1899, 12, 30)
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_SHEET = "xl/worksheets/sheet1.xml"
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
# Styles (cellXfs index): 0 plain, 1 date and time, 2 money (two decimals), 3 bold header.
_STYLES = (
    f'{_XML}<styleSheet xmlns="{_MAIN_NS}">'
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/>'
    '<numFmt numFmtId="165" formatCode="0.00"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill>'
    '</fills><borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="4"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'
)
_FIXED_FILES = {
    "[Content_Types].xml": (
        f'{_XML}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>'
    ),
    "_rels/.rels": (
        f'{_XML}<Relationships xmlns="{_PKG_REL_NS}"><Relationship Id="rId1" '
        f'Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/workbook.xml": (
        f'{_XML}<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}"><sheets>'
        '<sheet name="Export" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        f'{_XML}<Relationships xmlns="{_PKG_REL_NS}">'
        f'<Relationship Id="rId1" Type="{_REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{_REL_NS}/styles" Target="styles.xml"/></Relationships>'
    ),
    "xl/styles.xml": _STYLES,
}
_WIDTHS = {TEXT: 18, VERBATIM: 28, WHEN: 19, MONEY: 12, NUMBER: 10}
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_DESCRIPTOR = struct.Struct("<IIII")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_DESCRIPTOR_FLAG = 0x08
_LIMIT = 0xFFFFFFFF  # no zip64: Excel's row limit keeps a sheet far below 4 GiB


class ExportTooLarge(Exception):
    code = "EXPORT_TOO_LARGE"


def _deflate(data: bytes, *, final: bool) -> bytes:
    # A fresh compressor per chunk: no back-reference crosses into another
    # chunk, and the sync flush ends on a byte boundary with no final block.
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _dos_time(moment: datetime) -> tuple[int, int]:
    moment = _local(moment)
    return (moment.hour << 11 | moment.minute << 5 | moment.second // 2,
            (moment.year - 1980) << 9 | moment.month << 5 | moment.day)


def _xlsx_cell(ref: str, value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        delta = _local(value) - _EPOCH
        serial = delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400
        return f'<c r="{ref}" s="1"><v>{serial!r}</v></c>'
    if isinstance(value, Decimal):
        return f'<c r="{ref}" s="2"><v>{value}</v></c>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<c r="{ref}"><v>{value}</v></c>'
    text = escape(_ILLEGAL_XML.sub("", str(value)))
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'


class XlsxWriter:
    """One sheet, a frozen bold header row, dates and amounts as numbers with formats."""

    content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    extension = "xlsx"

    def __init__(self, columns: list[Column], state: dict | None = None):
        self.columns = columns
        self.letters = [_column_letter(i) for i in range(len(columns))]
        self.state = state or {}

    def _emit(self, data: bytes) -> bytes:
        self.state["offset"] += len(data)
        if self.state["offset"] > _LIMIT:
            raise ExportTooLarge("the XLSX file would pass 4 GiB")
        return data

    def _sheet(self, xml: str, *, final: bool = False) -> bytes:
        raw = xml.encode()
        packed = _deflate(raw, final=final)
        state = self.state
        state["crc"] = zlib.crc32(raw, state["crc"])
        state["size"] += len(raw)
        state["csize"] += len(packed)
        return self._emit(packed)

    def _rows_xml(self, rows, *, style: str = "") -> str:
        parts = []
        for row in rows:
            number = self.state["row"]
            if number > XLSX_MAX_ROWS + 1:
                raise ExportTooLarge("more rows than a spreadsheet holds")
            cells = "".join(_xlsx_cell(f"{letter}{number}", value) for letter, value in zip(self.letters, row,
                                                                                         strict=True))
            if style:
                cells = cells.replace("<c ", f'<c s="{style}" ')
            parts.append(f'<row r="{number}">{cells}</row>')
            self.state["row"] = number + 1
        return "".join(parts)

    def begin(self) -> bytes:
        time, date = _dos_time(timezone.now())
        self.state = {"offset": 0, "crc": 0, "size": 0, "csize": 0, "row": 1, "time": time, "date": date,
                      "entries": []}
        out = []
        for name, text in _FIXED_FILES.items():
            raw = text.encode()
            packed = _deflate(raw, final=True)
            crc = zlib.crc32(raw)
            self.state["entries"].append([name, 0, crc, len(packed), len(raw), self.state["offset"]])
            out.append(self._emit(_LOCAL_HEADER.pack(0x04034B50, 20, 0, 8, time, date, crc, len(packed), len(raw),
                                                     len(name), 0) + name.encode() + packed))
        self.state["sheet_offset"] = self.state["offset"]
        out.append(self._emit(_LOCAL_HEADER.pack(0x04034B50, 20, _DESCRIPTOR_FLAG, 8, time, date, 0, 0, 0,
                                                 len(_SHEET), 0) + _SHEET.encode()))
        cols = "".join(f'<col min="{i}" max="{i}" width="{_WIDTHS[c.kind]}" customWidth="1"/>'
                       for i, c in enumerate(self.columns, start=1))
        head = (f'{_XML}<worksheet xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}"><sheetViews><sheetView workbookViewId="0">'
                '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/></sheetView></sheetViews>'
                f'<cols>{cols}</cols><sheetData>')
        out.append(self._sheet(head + self._rows_xml([[c.header for c in self.columns]], style="3")))
        return b"".join(out)

    def rows(self, rows: list[list]) -> bytes:
        return self._sheet(self._rows_xml(rows)) if rows else b""

    def end(self) -> bytes:
        state = self.state
        out = [self._sheet("</sheetData></worksheet>", final=True)]
        out.append(self._emit(_DESCRIPTOR.pack(0x08074B50, state["crc"], state["csize"], state["size"])))
        entries = [*state["entries"],
                   [_SHEET, _DESCRIPTOR_FLAG, state["crc"], state["csize"], state["size"], state["sheet_offset"]]]
        directory = b"".join(
            _CENTRAL.pack(0x02014B50, 20, 20, flags, 8, state["time"], state["date"], crc, csize, size, len(name),
                          0, 0, 0, 0, 0, offset) + name.encode()
            for name, flags, crc, csize, size, offset in entries
        )
        directory_offset = state["offset"]
        out.append(self._emit(directory))
        out.append(self._emit(_END.pack(0x06054B50, 0, 0, len(entries), len(entries), len(directory),
                                        directory_offset, 0)))
        return b"".join(out)


WRITERS = {"CSV": CsvWriter, "XLSX": XlsxWriter}

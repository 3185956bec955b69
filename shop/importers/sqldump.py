"""Rows of one table out of a MySQL dump file (mysqldump, Navicat, phpMyAdmin).

What a dump holds is SQL text: ``CREATE TABLE`` (the column names, for an
``INSERT`` without a column list) and ``INSERT INTO t [(cols)] VALUES (...),
(...);`` with MySQL's literals: quoted strings with backslash escapes and
doubled quotes, ``NULL``, numbers, ``0x…`` / ``X'…'`` hex, ``_binary`` and
``_utf8mb4`` introducers, and the odd function call an install script writes
(``now()``, kept as an ``SqlExpression``). Nothing is executed.

The file is read in chunks and cut into statements by a scanner that knows
quotes and comments, so memory stays flat however large the dump; statements
of other tables are skipped without being parsed. Each ``rows`` call reads the
file once more (an import reads a handful of tables, each once).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

CHUNK = 1 << 20


class DumpError(Exception):
    code = "DUMP_UNREADABLE"


@dataclass(frozen=True)
class SqlExpression:
    """A value the dump computes (``now()``, ``CURRENT_TIMESTAMP``): not a
    literal, so the importer treats it as unknown."""

    text: str


# A backslash escape and what it stands for (MySQL's string literal rules;
# \% and \_ keep their backslash, any other escaped character stands for itself).
_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "%": "\\%", "_": "\\_"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SPECIAL = re.compile(r"[;'\"`#]|--(?=\s)|/\*")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]++|\\.|'')*+')
      | (?P<dstr>"(?:[^"\\]++|\\.|"")*+")
      | (?P<ident>`(?:[^`]++|``)*+`)
      | (?P<hex>0x[0-9A-Fa-f]*+|[xX]'[0-9A-Fa-f]*+')
      | (?P<bits>[bB]'[01]*+')
      | (?P<num>[-+]?(?:\d++(?:\.\d*+)?|\.\d++)(?:[eE][-+]?\d++)?)
      | (?P<word>[A-Za-z_$][\w$]*+)
      | (?P<punct>[(),;.=*])
      | (?P<other>\S)
    )""",
    re.VERBOSE | re.DOTALL,
)
_NAME = r"(?:`(?:[^`]|``)+`|[\w$]+)(?:\s*\.\s*(?:`(?:[^`]|``)+`|[\w$]+))?"
_HEAD = re.compile(
    rf"(?:(?P<insert>INSERT|REPLACE)\s+(?:(?:LOW_PRIORITY|DELAYED|HIGH_PRIORITY|IGNORE)\s+)*(?:INTO\s+)?"
    rf"|(?P<create>CREATE)\s+(?:TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?)(?P<name>{_NAME})",
    re.IGNORECASE,
)


def _unquote(token: str) -> str:
    quote, body = token[0], token[1:-1]
    body = body.replace(quote * 2, quote)
    if quote == "`":
        return body
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _open_text(path: Path):
    # surrogateescape: a binary column of some other table must not stop the
    # import; a value the importer uses is checked where it is used.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape", newline="")
    return open(path, encoding="utf-8", errors="surrogateescape", newline="")


def statements(path: Path) -> Iterator[str]:
    """Every SQL statement of the file, without its comments."""
    with _open_text(path) as stream:
        buffer, parts, start, pos, eof = "", [], 0, 0, False
        while True:
            found = _SPECIAL.search(buffer, pos)
            end = None
            if found is not None:
                at = found.start()
                end = at + 1 if found.group() == ";" else _skip(buffer, at, found.group(), eof)
            if end is None:  # nothing more in the buffer, or it ends inside a string or comment
                if eof:
                    if found is not None:
                        raise DumpError(f"an unterminated string or comment near: {buffer[found.start():found.start() + 60]!r}")
                    break
                keep = found.start() if found is not None else max(pos, len(buffer) - 3)
                buffer, pos, start = buffer[start:], keep - start, 0
                chunk = stream.read(CHUNK)
                eof = not chunk
                buffer += chunk
                continue
            token = found.group()
            if token == ";":
                text = ("".join(parts) + buffer[start:at]).strip()
                if text:
                    yield text
                parts, start = [], end
            elif token in ("#", "--", "/*"):
                parts.append(buffer[start:at] + " ")
                start = end
            pos = end
        text = ("".join(parts) + buffer[start:]).strip()
        if text:
            yield text


def _skip(buffer: str, at: int, token: str, eof: bool) -> int | None:
    """The index after the quoted string, identifier or comment starting at
    ``at``; None when it runs past the buffer (read more, unless at the end)."""
    if token in ("#", "--"):
        newline = buffer.find("\n", at)
        return newline + 1 if newline >= 0 else (len(buffer) if eof else None)
    if token == "/*":
        close = buffer.find("*/", at + 2)
        return close + 2 if close >= 0 else None
    i = at + 1
    while True:
        j = buffer.find(token, i)
        if j < 0:
            return None
        k = j - 1
        while token != "`" and k > at and buffer[k] == "\\":
            k -= 1
        if (j - 1 - k) % 2:
            i = j + 1  # an escaped quote
        elif j + 1 < len(buffer) and buffer[j + 1] == token:
            i = j + 2  # a doubled quote stands for one
        elif j + 1 == len(buffer) and not eof:
            return None  # cannot tell a doubled quote yet
        else:
            return j + 1


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip():
                raise DumpError(f"cannot read the statement near: {text[pos:pos + 60]!r}")
            return
        pos = match.end()
        yield match.lastgroup, match.group(match.lastgroup)


def _literal(kind: str, value: str, following: list[tuple[str, str]], i: int):
    """The Python value of the literal at ``following[i]`` and the index after it."""
    if kind in ("str", "dstr"):
        return _unquote(value), i + 1
    if kind == "num":
        return (Decimal(value) if any(c in value for c in ".eE") else int(value)), i + 1
    if kind == "hex":
        digits = value[2:] if value.startswith("0x") else value[2:-1]
        return bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits), i + 1
    if kind == "bits":
        bits = value[2:-1]
        return int(bits, 2) if bits else 0, i + 1
    if kind == "word":
        upper = value.upper()
        if upper == "NULL":
            return None, i + 1
        if upper in ("TRUE", "FALSE"):
            return int(upper == "TRUE"), i + 1
        if value.startswith("_") and i + 1 < len(following) and following[i + 1][0] in ("str", "hex", "dstr"):
            return _literal(*following[i + 1], following, i + 1)  # _binary '…', _utf8mb4 '…'
        if i + 1 < len(following) and following[i + 1] == ("punct", "("):
            depth, j = 0, i + 1
            while j < len(following):
                depth += {"(": 1, ")": -1}.get(following[j][1], 0) if following[j][0] == "punct" else 0
                j += 1
                if depth == 0:
                    break
            return SqlExpression("".join(v for _, v in following[i:j])), j
        return SqlExpression(value), i + 1
    if kind == "punct" and value == "-" or kind == "other" and value in "-+":
        number, j = _literal(*following[i + 1], following, i + 1)
        return (-number if value == "-" else number), j
    raise DumpError(f"unexpected {value!r} in a VALUES list")


def _columns_of_create(tokens: list[tuple[str, str]], i: int) -> list[str]:
    """Column names of a CREATE TABLE body starting at the "(" at ``i``."""
    columns, depth, at_item_start = [], 0, True
    for kind, value in tokens[i:]:
        if kind == "punct" and value == "(":
            depth += 1
            if depth == 1:
                at_item_start = True
                continue
        elif kind == "punct" and value == ")":
            depth -= 1
            if depth == 0:
                break
        elif kind == "punct" and value == "," and depth == 1:
            at_item_start = True
            continue
        if at_item_start and depth == 1:
            at_item_start = False
            if kind == "ident":
                columns.append(_unquote(value))
            elif kind == "word" and value.upper() not in {"PRIMARY", "KEY", "UNIQUE", "INDEX", "CONSTRAINT",
                                                          "FOREIGN", "FULLTEXT", "SPATIAL", "CHECK"}:
                columns.append(value)
    return columns


def _values(tokens: list[tuple[str, str]], i: int) -> Iterator[list]:
    """The tuples of a VALUES list starting at ``i``."""
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "punct" and value == ",":
            i += 1
            continue
        if not (kind == "punct" and value == "("):
            return  # ON DUPLICATE KEY UPDATE …, or the end
        row, i = [], i + 1
        while True:
            kind, value = tokens[i]
            if kind == "punct" and value == ")":
                i += 1
                break
            if kind == "punct" and value == ",":
                i += 1
                continue
            item, i = _literal(kind, value, tokens, i)
            row.append(item)
        yield row


class DumpSource:
    """A dump file as a source of rows: ``rows("goods")`` gives each row of
    that table as a dict of column → value."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DumpError(f"no such file: {self.path}")
        self._columns: dict[str, list[str]] = {}

    def describe(self) -> str:
        return self.path.name

    def rows(self, table: str) -> Iterator[dict]:
        for text in statements(self.path):
            head = _HEAD.match(text)
            if head is None or _plain_name(head.group("name")) != table:
                continue
            tokens = list(_tokens(text[head.end():]))
            if head.group("create"):
                self._columns[table] = _columns_of_create(tokens, 0)
                continue
            columns, i = self._columns.get(table), 0
            if tokens and tokens[0] == ("punct", "("):
                columns, i = [], 1
                while tokens[i] != ("punct", ")"):
                    if tokens[i][0] in ("ident", "word"):
                        columns.append(_unquote(tokens[i][1]) if tokens[i][0] == "ident" else tokens[i][1])
                    i += 1
                i += 1
            if i >= len(tokens) or tokens[i][0] != "word" or tokens[i][1].upper() not in ("VALUES", "VALUE"):
                continue  # INSERT … SELECT or … SET: not what a dump writes
            if columns is None:
                raise DumpError(f"an INSERT into {table} comes before its CREATE TABLE and names no columns")
            for row in _values(tokens, i + 1):
                if len(row) != len(columns):
                    raise DumpError(f"a row of {table} has {len(row)} values for {len(columns)} columns")
                yield dict(zip(columns, row, strict=True))


def _plain_name(name: str) -> str:
    """``db.`t``` → ``t``."""
    last = re.findall(r"`((?:[^`]|``)+)`|([\w$]+)", name)[-1]
    return last[0].replace("``", "`") if last[0] else last[1]

"""Rows of a live MySQL / MariaDB database, read through PyMySQL.

PyMySQL is pure Python (nothing to compile on the owner's server) and the
maintained driver of that kind; it is an optional extra (``pip install
.[mysql]``), since most moves start from a dump file. Rows are streamed with
an unbuffered cursor, so a large key table is not loaded at once. Read-only:
the importer only ever runs ``SELECT *``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit


class MysqlError(Exception):
    code = "MYSQL_UNREADABLE"


class MysqlSource:
    """``mysql://user[:password]@host[:port]/database``; without a password
    in the URL, MYSQL_PWD (as the mysql client reads it) gives it, so it need
    not appear on a command line."""

    def __init__(self, url: str):
        try:
            import pymysql
        except ImportError:
            raise MysqlError("reading MySQL needs PyMySQL: pip install 'kamidrop[mysql]'") from None
        self._pymysql = pymysql
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb") or not parts.path.strip("/"):
            raise MysqlError("give the database as mysql://user[:password]@host[:port]/database")
        self.database = unquote(parts.path.strip("/"))
        self.host = parts.hostname or "127.0.0.1"
        self._options = {
            "host": self.host, "port": parts.port or 3306, "user": unquote(parts.username or "root"),
            "password": unquote(parts.password) if parts.password is not None else os.environ.get("MYSQL_PWD", ""),
            "database": self.database, "charset": "utf8mb4",
        }
        try:
            self._connection = pymysql.connect(**self._options)
        except pymysql.MySQLError as exc:
            raise MysqlError(f"cannot connect to {self.host}/{self.database}: {exc}") from None

    def describe(self) -> str:
        return f"{self.host}/{self.database}"

    def rows(self, table: str) -> Iterator[dict]:
        """Every row of ``table``; none when there is no such table (as a dump without it)."""
        quoted = "`" + table.replace("`", "``") + "`"
        with self._connection.cursor(self._pymysql.cursors.SSDictCursor) as cursor:
            try:
                cursor.execute(f"SELECT * FROM {quoted}")  # a table name, quoted above
            except self._pymysql.err.ProgrammingError as exc:
                if exc.args and exc.args[0] == 1146:  # ER_NO_SUCH_TABLE
                    return
                raise
            yield from cursor

    def close(self) -> None:
        self._connection.close()

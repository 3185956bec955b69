"""The SQL dump reader: MySQL's literals and escapes, comments, and statements cut anywhere by the read buffer."""

import gzip
from decimal import Decimal
from pathlib import Path

import pytest

from shop.importers import sqldump
from shop.importers.sqldump import DumpError, DumpSource, SqlExpression

FIXTURES = Path(__file__).parent / "fixtures"

TRICKY = r"""-- a comment; with a semicolon
/*!40101 SET NAMES utf8mb4 */;
# another comment 'with a quote
CREATE TABLE `t` (
  `id` int NOT NULL,
  `s` text,
  `n` decimal(10,2) DEFAULT '0.00',
  `at` timestamp NULL DEFAULT NULL,
  `b` blob,
  PRIMARY KEY (`id`),
  KEY `idx_s` (`s`(10)),
  CONSTRAINT `fk` FOREIGN KEY (`id`) REFERENCES `u` (`id`)
) ENGINE=InnoDB COMMENT='a; table';
INSERT INTO `t` VALUES (1,'it''s \'quoted\' \"double\"',-1.50,'2023-01-02 03:04:05',NULL),(2,'back\\slash \\\\n not a newline; -- nor a comment',2,now(),0x4142),
(3,'line\nbreak\ttab\r\Z\0 and \% \_ kept','3e2',CURRENT_TIMESTAMP,_binary 'x'), (4, '中文 ✓ 🎮', +4, '0000-00-00 00:00:00', X'43');
INSERT INTO db.`t` (`s`, `id`) VALUES ('only two columns', 5);
INSERT INTO `other` VALUES (1,'ignored');
"""


def rows_of(tmp_path, text: str, table: str = "t", name: str = "dump.sql") -> list[dict]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return list(DumpSource(path).rows(table))


def test_mysql_literals_escapes_and_comments_are_read_as_mysql_reads_them(tmp_path):
    # when
    rows = rows_of(tmp_path, TRICKY)
    # then
    assert [row["id"] for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0] == {"id": 1, "s": "it's 'quoted' \"double\"", "n": Decimal("-1.50"), "at": "2023-01-02 03:04:05",
                       "b": None}
    assert rows[1]["s"] == "back\\slash \\\\n not a newline; -- nor a comment"
    assert rows[1]["at"] == SqlExpression("now()") and rows[1]["b"] == b"AB"
    assert rows[2]["s"] == "line\nbreak\ttab\r\x1a\x00 and \\% \\_ kept"
    assert rows[2]["at"] == SqlExpression("CURRENT_TIMESTAMP") and rows[2]["b"] == "x"
    assert rows[3] == {"id": 4, "s": "中文 ✓ 🎮", "n": 4, "at": "0000-00-00 00:00:00", "b": b"C"}
    assert rows[4] == {"s": "only two columns", "id": 5}


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_statements_cut_anywhere_by_the_read_buffer_read_the_same(tmp_path, monkeypatch, chunk):
    # given: the whole file read at once
    whole = rows_of(tmp_path, TRICKY)
    # when: read a few characters at a time, so every quote, escape and comment straddles a read
    monkeypatch.setattr(sqldump, "CHUNK", chunk)
    pieces = rows_of(tmp_path, TRICKY)
    # then
    assert pieces == whole


def test_the_fixture_dumps_read_identically_in_small_pieces(monkeypatch):
    # given
    whole = {table: list(DumpSource(FIXTURES / "dujiaoka.sql").rows(table)) for table in ("orders", "goods", "carmis")}
    # when
    monkeypatch.setattr(sqldump, "CHUNK", 13)
    pieces = {table: list(DumpSource(FIXTURES / "dujiaoka.sql").rows(table)) for table in whole}
    # then
    assert pieces == whole and len(whole["carmis"]) == 13


def test_a_gzipped_dump_is_read_too(tmp_path):
    # given
    path = tmp_path / "dump.sql.gz"
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write(TRICKY)
    # when
    rows = list(DumpSource(path).rows("t"))
    # then
    assert len(rows) == 5 and rows[3]["s"] == "中文 ✓ 🎮"


def test_an_unterminated_string_is_an_error_not_a_silent_stop(tmp_path):
    with pytest.raises(DumpError, match="unterminated"):
        rows_of(tmp_path, "CREATE TABLE `t` (`id` int);\nINSERT INTO `t` VALUES (1),('oops);\n")


def test_an_insert_with_no_columns_and_no_create_table_is_an_error(tmp_path):
    with pytest.raises(DumpError, match="names no columns"):
        rows_of(tmp_path, "INSERT INTO `t` VALUES (1,'a');\n")


def test_a_row_of_the_wrong_width_is_an_error(tmp_path):
    with pytest.raises(DumpError, match="has 1 values for 2 columns"):
        rows_of(tmp_path, "CREATE TABLE `t` (`id` int, `s` text);\nINSERT INTO `t` VALUES (1);\n")

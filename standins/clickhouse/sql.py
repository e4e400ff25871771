"""The little SQL lexing the HTTP layer does itself: a query's FORMAT clause, and an INSERT's
inline rows split from its statement."""

from __future__ import annotations

import re
from dataclasses import dataclass

# One lexer token. Spaces and comments are skipped; anything but a word breaks a `FORMAT name`.
TOKEN = re.compile(rb"""
    (?P<space>\s+|--[^\n]*|\#[^\n]*|/\*.*?\*/)
  | '(?:[^'\\]|\\.|'')*' | "(?:[^"\\]|\\.|"")*" | `(?:[^`\\]|\\.|``)*`
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<bracket>[][()])
  | .
""", re.X | re.S)
AFTER_OUTPUT_FORMAT = re.compile(rb"\s*(?:;\s*)?$|\s+SETTINGS\b", re.I)
INSERT_DATA_START = re.compile(rb"[ \t\f]*\r?\n?")


@dataclass
class Statement:
    sql: bytes
    keyword: str = ""  # the first word, upper-cased
    format: str | None = None  # the FORMAT clause: output for queries, input for inserts
    data: bytes | None = None  # an INSERT's inline rows, `sql` then stops before FORMAT/VALUES


def parse(sql: bytes) -> Statement:
    """Split what ClickHouse splits: the FORMAT clause, and an INSERT's rows from its statement.

    Only top-level words count, so names in brackets or quotes are never taken for clauses.
    An INSERT ... SELECT keeps any FORMAT for its SELECT and carries no inline rows.
    """
    stmt = Statement(sql)
    depth, previous, format_start = 0, b"", 0
    for token in TOKEN.finditer(sql):
        if token.group("space"):
            continue
        word = token.group("word")
        if word is not None and not stmt.keyword:
            stmt.keyword = word.upper().decode()
        if token.group("bracket"):
            depth += 1 if token.group("bracket") in b"([" else -1
        if word is None or depth:
            previous = b""
            continue
        upper = word.upper()
        inserting = stmt.keyword == "INSERT"
        if previous == b"FORMAT":
            if inserting:
                rows = INSERT_DATA_START.match(sql, token.end())
                assert rows is not None  # the pattern matches anywhere, if only the empty string
                return Statement(sql[:format_start], stmt.keyword, word.decode(), sql[rows.end():])
            if AFTER_OUTPUT_FORMAT.match(sql, token.end()):
                stmt.format = word.decode()
        elif inserting and upper == b"VALUES":  # stopping here also spares lexing every row
            return Statement(sql[:token.start()], stmt.keyword, "Values", sql[token.end():])
        elif inserting and upper in (b"SELECT", b"WITH"):
            return stmt
        previous, format_start = upper, token.start()
    return stmt


def words(sql: bytes) -> list[str]:
    """The top-level words of a statement, upper-cased (names in quotes or brackets are not words)."""
    found, depth = [], 0
    for token in TOKEN.finditer(sql):
        if token.group("bracket"):
            depth += 1 if token.group("bracket") in b"([" else -1
        elif token.group("word") is not None and not depth:
            found.append(token.group("word").upper().decode())
    return found

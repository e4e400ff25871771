"""ClickHouse's errors as the HTTP interface reports them: code, name and HTTP status."""

from __future__ import annotations

import re

# ClickHouse's exceptionCodeToHTTPStatus, keyed by error name since chDB's messages carry it.
HTTP_STATUS = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "ACCESS_DENIED"), 403),
    **dict.fromkeys((
        "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE", "CANNOT_PARSE_QUOTED_STRING",
        "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
        "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE",
        "TOO_DEEP_AST", "TOO_BIG_AST", "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA",
        "TYPE_MISMATCH"), 400),
    **dict.fromkeys((
        "UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
        "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING",
        "UNKNOWN_AGGREGATE_FUNCTION", "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE",
        "UNKNOWN_TYPE_OF_QUERY"), 404),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "TIMEOUT_EXCEEDED": 408,
}


class ClickHouseError(Exception):
    def __init__(self, code: int, message: str, name: str) -> None:
        super().__init__(message)
        self.code, self.message, self.name = code, message, name

    @classmethod
    def from_chdb(cls, exc: Exception) -> ClickHouseError:
        """Unwrap chDB's text, which may nest `Code: N. DB::Exception:` several times."""
        text = str(exc)
        starts = list(re.finditer(r"Code: (\d+)\. DB::Exception: ", text))
        if not starts:
            return cls(1001, text, "STD_EXCEPTION")
        rest = text[starts[-1].end():]
        tail = re.fullmatch(
            r"(.*?)\.? \(([A-Z0-9_]+)\)(?: \(version [^)]*\))?(?:\. \(\2\)(?: \(version [^)]*\))?)*\s*",
            rest, re.S)
        if tail is None:
            return cls(int(starts[-1].group(1)), rest.strip(), "UNKNOWN_EXCEPTION")
        return cls(int(starts[-1].group(1)), tail.group(1), tail.group(2))

"""Users of the stand-in: the password of `default` and, from a users file, more logins, each
with the settings profile ClickHouse would give it and, where the engine has no setting for a
refusal, the statements the gateway lets through.

The users file (JSON, 0600) is what a server's users.xml and GRANTs say, in the two parts chDB
can and cannot enforce:

    {"platform_reader": {"password": "...", "settings": {"readonly": "1"}},
     "platform_writer": {"password": "...", "statements": ["SELECT", "INSERT", "DELETE", "ALTER UPDATE"]}}

- `settings` are applied with SET on the login's connection before its first statement. The
  engine enforces them from then on: with `readonly=1` it refuses every write, DDL and SET
  (ClickHouse's READONLY, code 164), and no statement of the login can put it back.
- `statements` (absent: every statement) is the gateway's own check, made before the engine
  sees the statement: a statement whose kind is not listed is refused with ACCESS_DENIED (497)
  as a server without that grant would. chDB runs without access control (every connection is
  its `default` user with all grants), so this is the only thing that keeps, say, DROP from a
  login whose profile allows writes.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from standins.clickhouse.errors import ClickHouseError
from standins.clickhouse.sql import Statement, words

# Kinds a user may be granted: the statement's first word, ALTER with its action.
ALTER_ACTIONS = frozenset({"UPDATE", "DELETE"})


@dataclass(frozen=True)
class Login:
    name: str
    password: str
    settings: dict[str, str]
    statements: frozenset[str] | None  # None: the engine alone decides

    def check_password(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.password.encode())

    def allow(self, stmt: Statement) -> None:
        if self.statements is None or not stmt.keyword:
            return
        kind = statement_kind(stmt)
        if kind not in self.statements:
            raise ClickHouseError(497, f"{self.name}: Not enough privileges. To execute this query, it's necessary"
                                  f" to have the grant {kind} (the chDB stand-in grants {self.name} only"
                                  f" {', '.join(sorted(self.statements))})", "ACCESS_DENIED")


def statement_kind(stmt: Statement) -> str:
    """`ALTER UPDATE` / `ALTER DELETE` for those mutations (any other ALTER is `ALTER`), else
    the first word."""
    if stmt.keyword != "ALTER":
        return stmt.keyword
    seen = words(stmt.sql)
    # ALTER TABLE [db.]name [ON CLUSTER c] <ACTION> ...: the first action word after the name.
    action = next((w for w in seen[3:] if w in ALTER_ACTIONS or w in ("ADD", "DROP", "MODIFY", "CLEAR",
                                                                      "MATERIALIZE", "RENAME", "COMMENT",
                                                                      "FREEZE", "ATTACH", "DETACH", "MOVE",
                                                                      "REPLACE", "FETCH")), "")
    return f"ALTER {action}" if action in ALTER_ACTIONS else "ALTER"


def load(path: str | None, default_password: str | None) -> dict[str, Login]:
    """`default` (with the stack's password, or any when none is given) and the file's logins."""
    logins = {"default": Login("default", default_password or "", {}, None)}
    if path:
        for name, spec in json.loads(Path(path).read_text()).items():
            statements = spec.get("statements")
            logins[name] = Login(name, spec["password"], {k: str(v) for k, v in spec.get("settings", {}).items()},
                                 None if statements is None else frozenset(s.upper() for s in statements))
    return logins

"""`python -m standins.clickhouse --host H --port P --data-dir DIR [--password-file FILE]
[--users-file FILE] [--backups-dir DIR]`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from xml.sax.saxutils import escape

from standins.clickhouse import __doc__ as DESCRIPTION
from standins.clickhouse import users
from standins.clickhouse.engine import log
from standins.clickhouse.server import Gateway

# The server configuration chDB reads when the engine starts: where BACKUP ... TO File(...) may
# write (relative names land there), and the query log, where the engine records every query
# and its error, as a server does.
CONFIG = """<clickhouse>
  <backups><allowed_path>{backups}/</allowed_path></backups>
  <query_log><database>system</database><table>query_log</table>
    <flush_interval_milliseconds>1000</flush_interval_milliseconds></query_log>
</clickhouse>
"""


def write_config(data_dir: str, backups: str | None) -> str | None:
    if not backups:
        return None
    Path(backups).mkdir(parents=True, exist_ok=True)
    path = Path(data_dir).resolve().parent / f"{Path(data_dir).name}-config.xml"
    path.write_text(CONFIG.format(backups=escape(str(Path(backups).resolve()))))
    return str(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(DESCRIPTION or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--password-file", help="file holding the password of user 'default'")
    parser.add_argument("--users-file", help="JSON: more users, their settings profile and statements"
                                             " (standins/clickhouse/users.py)")
    parser.add_argument("--backups-dir", help="the directory BACKUP ... TO File(...) may write to; also turns"
                                              " on the query log")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    password = None
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.read().rstrip("\r\n")
    logins = users.load(args.users_file, password)
    gateway = Gateway((args.host, args.port), args.data_dir, logins, open_logins=password is None,
                      config_file=write_config(args.data_dir, args.backups_dir))
    # shutdown() waits for serve_forever() to return, so it runs on a thread of its own. The
    # signal may land on one of chDB's threads; serve_forever's poll still runs the handler.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=gateway.shutdown).start())
    log.info("ClickHouse %s (chDB) on http://%s:%d, data in %s, users: %s", gateway.version, args.host, args.port,
             args.data_dir, ", ".join(sorted(logins)))
    gateway.serve_forever(poll_interval=0.2)
    log.info("stopping")
    gateway.close()


if __name__ == "__main__":
    main()

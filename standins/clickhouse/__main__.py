"""`python -m standins.clickhouse --host H --port P --data-dir DIR [--password-file FILE]`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from standins.clickhouse import __doc__ as DESCRIPTION
from standins.clickhouse.engine import log
from standins.clickhouse.server import Gateway


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(DESCRIPTION or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--password-file", help="file holding the password of user 'default'")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    password = None
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.read().rstrip("\r\n")
    gateway = Gateway((args.host, args.port), args.data_dir, password)
    # shutdown() waits for serve_forever() to return, so it runs on a thread of its own. The
    # signal may land on one of chDB's threads; serve_forever's poll still runs the handler.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=gateway.shutdown).start())
    log.info("ClickHouse %s (chDB) on http://%s:%d, data in %s", gateway.version, args.host, args.port,
             args.data_dir)
    gateway.serve_forever(poll_interval=0.2)
    log.info("stopping")
    gateway.close()


if __name__ == "__main__":
    main()

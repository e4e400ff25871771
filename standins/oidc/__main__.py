"""`python -m standins.oidc --host H --port P [--issuer URL] [--data-dir DIR]`: validate the
settings, then serve. A missing or invalid `OIDC_STANDIN_*` variable exits 2 naming it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from standins.config import check_secret, fail, load_settings
from standins.oidc.settings import OidcStandinSettings

SERVICE = "oidc-standin"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m standins.oidc")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--issuer", help="the issuer URL (default: the URL each request reached it at)")
    parser.add_argument("--data-dir", type=Path, help="where registered clients and the signing key are kept")
    args = parser.parse_args(argv)
    settings = load_settings(OidcStandinSettings, SERVICE)
    issuer = args.issuer.rstrip("/") if args.issuer else None
    problems: list[str] = []
    if not settings.clients and settings.registration_token is None:
        problems.append("no client could ever log in: set OIDC_STANDIN_CLIENTS or OIDC_STANDIN_REGISTRATION_TOKEN")
    if not settings.is_local:
        # Reachable from more than this machine: guessable credentials would let anyone mint logins.
        if settings.registration_token is not None:
            check_secret(problems, "OIDC_STANDIN_REGISTRATION_TOKEN", settings.secret("registration_token"))
        for client_id, client in settings.clients.items():
            check_secret(problems, f"OIDC_STANDIN_CLIENTS[{client_id}].secret", client.secret.get_secret_value())
    if problems:
        fail(SERVICE, f"refusing to start in env={settings.env}", problems)
    from werkzeug.serving import make_server

    from standins.oidc.app import create_app

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    server = make_server(args.host, args.port, create_app(settings, issuer, args.data_dir), threaded=True)
    # shutdown() waits for serve_forever() to return, so it runs on a thread of its own.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown).start())
    logging.getLogger(SERVICE).info("issuer %s on %s:%d", issuer or "(per request)", args.host, args.port)
    server.serve_forever()


if __name__ == "__main__":
    main()

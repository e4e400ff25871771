"""`python -m app.backend [serve|migrate|downgrade|reseal-provider-keys] --host H --port P [--check-config] [--revision R]`.

`serve` validates the configuration and migrates the database before binding the port, so a
misconfigured instance exits non-zero (2: configuration, 3: a dependency) without serving.
`--check-config` runs the same validation and stops there: exit 2 naming each problem's
variable as a refused start does, 0 when the configuration would start (no dependency is
contacted, so an unreachable one still shows only at a real start).
`reseal-provider-keys` re-encrypts users' provider API keys under `BACKEND_PROVIDER_KEY_ACTIVE`,
the last step of rotating that key: afterwards the old key id can leave `BACKEND_PROVIDER_KEYS`.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

# The agents validate tool arguments with jsonschema, which imports rfc3987_syntax (when
# installed) only to check "iri" formats, which no tool schema uses and no format checker is
# asked for; building its grammar took ~2 s of every start, more than the rest of the import.
# Set before anything imports the app, also when this module is imported ahead of a start.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from app.backend import startup  # noqa: E402
from app.common import cli
from app.common.cli import EXIT_CONFIG
from app.common.settings import BackendSettings


def fail(code: int, headline: str, problems: list[str]) -> NoReturn:
    cli.fail("backend", code, headline, problems)


def migrate(settings: BackendSettings) -> None:
    from app.backend import migrate as m

    cli.migrating("backend", "BACKEND_DATABASE_URL", lambda: m.upgrade(settings))


def reseal_provider_keys(settings: BackendSettings) -> None:
    import asyncio

    from app.backend.db import make_engine
    from app.backend.providers import KeyRing, reseal

    ring = KeyRing(settings)
    if not ring.ready:
        fail(EXIT_CONFIG, "nothing to reseal with", ["BACKEND_PROVIDER_KEY_ACTIVE: not one of BACKEND_PROVIDER_KEYS"])

    async def run() -> int:
        engine = make_engine(settings)
        try:
            return await reseal(engine, ring)
        finally:
            await engine.dispose()

    cli.migrating("backend", "BACKEND_DATABASE_URL", lambda: print(
        f"backend: {asyncio.run(run())} provider connection(s) resealed under key {ring.active}"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.backend")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "downgrade", "reseal-provider-keys"])
    parser.add_argument("--revision", help="migrate: upgrade to this revision (default head); downgrade: to this one")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration as a start would, then exit (0: it would start)")
    args = parser.parse_args(argv)
    settings = cli.load_settings(BackendSettings, "backend")
    if problems := startup.problems(settings):
        fail(EXIT_CONFIG, f"refusing to start in env={settings.env}", problems)
    if args.check_config:
        print(f"backend: configuration ok for env={settings.env}")
        return
    if args.command == "reseal-provider-keys":
        reseal_provider_keys(settings)
        return
    if args.command == "downgrade":
        from app.backend import migrate as m

        if not args.revision:
            fail(EXIT_CONFIG, "downgrade needs --revision", ["--revision: the revision to go down to"])
        cli.migrating("backend", "BACKEND_DATABASE_URL", lambda: m.downgrade(settings, args.revision))
        return
    if args.command == "migrate" and args.revision:
        from app.backend import migrate as m

        cli.migrating("backend", "BACKEND_DATABASE_URL", lambda: m.upgrade(settings, args.revision))
        return
    migrate(settings)
    if args.command == "migrate":
        return
    import uvicorn

    from app.backend.app import create_app

    # uvicorn enforces the frame size (close 1009) and the ping/pong keepalive (close 1011).
    uvicorn.run(create_app(settings), host=args.host, port=args.port, access_log=False, log_level="info",
                ws_max_size=settings.ws_max_message_bytes, ws_ping_interval=settings.ws_ping_interval_s,
                ws_ping_timeout=settings.ws_ping_timeout_s)


if __name__ == "__main__":
    main()

"""`python -m app.auth [serve] --host H --port P`, or `migrate`, `rotate-key`, `retire-key`, `set-role`.

`serve` validates the configuration, makes sure a signing key exists, migrates the database
and only then binds the port: a misconfigured instance exits non-zero without serving.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import NoReturn

from app.auth import startup
from app.auth.keys import KeyRing, KeyRingError
from app.common import cli
from app.common.cli import EXIT_CONFIG
from app.common.settings import AuthSettings


def fail(code: int, headline: str, problems: list[str]) -> NoReturn:
    cli.fail("auth", code, headline, problems)


def migrate(settings: AuthSettings, downgrade_to: str | None = None) -> None:
    from app.auth import migrate as m

    cli.migrating("auth", "AUTH_DATABASE_URL", lambda: m.downgrade(settings, downgrade_to) if downgrade_to
                  else m.upgrade(settings))


def serve(settings: AuthSettings, host: str, port: int) -> None:
    import uvicorn

    from app.auth.app import create_app

    if problems := startup.problems(settings):
        fail(EXIT_CONFIG, f"refusing to start in env={settings.env}", problems)
    ring = KeyRing(settings.key_dir)
    if settings.generate_keys:
        ring.ensure()
    if problems := startup.key_problems(settings):
        fail(EXIT_CONFIG, "no usable signing key", problems)
    migrate(settings)
    # No access log: callback URLs carry authorization codes in their query strings.
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_level="info")


async def _set_role(settings: AuthSettings, email: str, role: str) -> None:
    from app.auth import users
    from app.auth.db import make_engine

    engine = make_engine(settings)
    try:
        async with engine.begin() as conn:
            user = await users.by_email(conn, email)
            if user is None:
                fail(1, "set-role failed", [f"no user {email}"])
            await users.set_role(conn, user.id, role)  # type: ignore[union-attr]
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.auth")
    sub = parser.add_subparsers(dest="command")
    p_serve = sub.add_parser("serve", help="run the HTTP service (the default)")
    for p in (parser, p_serve):
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8001)
    p_mig = sub.add_parser("migrate", help="upgrade the schema to head (or --downgrade REV)")
    p_mig.add_argument("--downgrade", metavar="REV")
    sub.add_parser("rotate-key", help="make a new signing key active")
    p_ret = sub.add_parser("retire-key", help="stop accepting tokens signed by KID")
    p_ret.add_argument("kid")
    p_role = sub.add_parser("set-role", help="set a user's role (bootstrap the first owner)")
    p_role.add_argument("email")
    p_role.add_argument("role", choices=["viewer", "member", "admin", "owner"])
    sub.add_parser("check-config", help="validate the configuration and exit")
    args = parser.parse_args(argv)

    settings = cli.load_settings(AuthSettings, "auth")
    if args.command in (None, "serve"):
        serve(settings, args.host, args.port)
    elif args.command == "migrate":
        migrate(settings, args.downgrade)
    elif args.command == "rotate-key":
        key = KeyRing(settings.key_dir).rotate(settings.key_activation_delay_s)
        print(f"{key.kid} (published now, signs in {settings.key_activation_delay_s:g} s)")
    elif args.command == "retire-key":
        try:
            KeyRing(settings.key_dir).retire(args.kid)
        except KeyRingError as e:
            fail(1, "retire-key failed", [str(e)])
    elif args.command == "set-role":
        asyncio.run(_set_role(settings, args.email, args.role))
    elif args.command == "check-config":
        if problems := startup.problems(settings):
            fail(EXIT_CONFIG, f"configuration not valid for env={settings.env}", problems)
        print("configuration ok")


if __name__ == "__main__":
    main()

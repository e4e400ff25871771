"""`python -m app.auth [serve] --host H --port P [--check-config]`, or `migrate`, `rotate-key`,
`retire-key`, `set-role`.

`serve` validates the configuration, makes sure a signing key exists, migrates the database
and only then binds the port: a misconfigured instance exits non-zero without serving.
`--check-config` runs the same validation and stops there: exit 2 naming each problem's
variable as a refused start does, 0 when the configuration would start (dependencies such as
the database are not contacted, so an unreachable one still shows only at a real start).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import NoReturn

from app.auth import key_changes, startup
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


def validate(settings: AuthSettings) -> None:
    """What `serve` checks before it writes anything (a generated key, the schema) or binds a
    port; exits 2 naming each problem. A key the dev-only switch would generate is not required."""
    if problems := startup.problems(settings):
        fail(EXIT_CONFIG, f"refusing to start in env={settings.env}", problems)
    if not settings.generate_keys and (problems := startup.key_problems(settings)):
        fail(EXIT_CONFIG, "no usable signing key", problems)


def serve(settings: AuthSettings, host: str, port: int) -> None:
    import uvicorn

    from app.auth.app import create_app

    validate(settings)
    if settings.generate_keys:
        KeyRing(settings.key_dir).ensure()
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
        p.add_argument("--check-config", action="store_true",
                       help="validate the configuration as a start would, then exit (0: it would start)")
    p_mig = sub.add_parser("migrate", help="upgrade the schema to head (or --downgrade REV)")
    p_mig.add_argument("--downgrade", metavar="REV")
    sub.add_parser("rotate-key", help="make a new signing key active")
    p_ret = sub.add_parser("retire-key", help="stop accepting tokens signed by KID")
    p_ret.add_argument("kid")
    p_role = sub.add_parser("set-role", help="set a user's role (bootstrap the first owner)")
    p_role.add_argument("email")
    p_role.add_argument("role", choices=["viewer", "member", "admin", "owner"])
    args = parser.parse_args(argv)

    settings = cli.load_settings(AuthSettings, "auth")
    if args.command in (None, "serve") and args.check_config:
        validate(settings)
        print(f"auth: configuration ok for env={settings.env}")
    elif args.command in (None, "serve"):
        serve(settings, args.host, args.port)
    elif args.command == "migrate":
        migrate(settings, args.downgrade)
    elif args.command == "rotate-key":
        key = KeyRing(settings.key_dir).rotate(settings.key_activation_delay_s)
        print(f"{key.kid} (published now, signs in {settings.key_activation_delay_s:g} s)")
        asyncio.run(key_changes.announce_once(settings, "rotated", key.kid))
    elif args.command == "retire-key":
        try:
            KeyRing(settings.key_dir).retire(args.kid)
        except KeyRingError as e:
            fail(1, "retire-key failed", [str(e)])
        if not asyncio.run(key_changes.announce_once(settings, "retired", args.kid)):
            print(f"{args.kid} retired; backends not told (Redis away): they refuse it within their JWKS TTL")
    elif args.command == "set-role":
        asyncio.run(_set_role(settings, args.email, args.role))


if __name__ == "__main__":
    main()

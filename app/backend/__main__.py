"""`python -m app.backend [serve] --host H --port P`, or `migrate` / `check-config`.

`serve` validates the configuration and migrates the database before binding the port, so a
misconfigured instance exits non-zero (2: configuration, 3: a dependency) without serving.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from app.backend import startup
from app.common.settings import BackendSettings

EXIT_CONFIG = 2
EXIT_DEPENDENCY = 3


def fail(code: int, headline: str, problems: list[str]) -> None:
    print(f"backend: {headline}:", *(f"  - {p}" for p in problems), sep="\n", file=sys.stderr)
    sys.exit(code)


def load_settings() -> BackendSettings:
    try:
        return BackendSettings()
    except ValidationError as e:
        fail(EXIT_CONFIG, "invalid configuration", [
            f"BACKEND_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in e.errors()])
        raise AssertionError from None


def migrate(settings: BackendSettings) -> None:
    from app.backend import migrate as m

    try:
        m.upgrade(settings)
    except (OSError, TimeoutError) as e:
        fail(EXIT_DEPENDENCY, "database unreachable", [f"BACKEND_DATABASE_URL: {type(e).__name__}: {e}"])
    except Exception as e:
        if type(e).__module__.startswith(("sqlalchemy", "asyncpg")):
            fail(EXIT_DEPENDENCY, "database migration failed", [f"{type(e).__name__}: {str(e).splitlines()[0]}"])
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.backend")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "check-config"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    settings = load_settings()
    if problems := startup.problems(settings):
        fail(EXIT_CONFIG, f"refusing to start in env={settings.env}", problems)
    if args.command == "check-config":
        print(f"backend: configuration ok for env={settings.env}")
        return
    migrate(settings)
    if args.command == "migrate":
        return
    import uvicorn

    from app.backend.app import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, access_log=False, log_level="info")


if __name__ == "__main__":
    main()

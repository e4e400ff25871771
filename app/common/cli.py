"""What every service's command line shares: loading settings, and failing with a message
that names each problem's variable (never its value) and a documented exit code."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings
from pydantic_settings.exceptions import SettingsError

EXIT_CONFIG = 2
EXIT_DEPENDENCY = 3

S = TypeVar("S", bound=BaseSettings)


def fail(service: str, code: int, headline: str, problems: list[str]) -> NoReturn:
    print(f"{service}: {headline}:", *(f"  - {p}" for p in problems), sep="\n", file=sys.stderr)
    sys.exit(code)


def _variable(prefix: str, loc: tuple[int | str, ...]) -> str:
    """AUTH_SERVICE_CLIENTS[backend].secret: the variable, then where inside its JSON value."""
    inner = "".join(f"[{p}]" if i == 0 else f".{p}" for i, p in enumerate(loc[1:]))
    return f"{prefix}{str(loc[0]).upper()}{inner}"


def load_settings(cls: type[S], service: str) -> S:
    prefix = str(cls.model_config.get("env_prefix", ""))
    try:
        return cls()
    except ValidationError as e:
        # Field errors name the variable; a check across fields names its variables in the message.
        fail(service, EXIT_CONFIG, "invalid configuration", [
            f"{_variable(prefix, err['loc'])}: {err['msg']}" if err["loc"]
            else str(err["msg"]).removeprefix("Value error, ") for err in e.errors()])
    except SettingsError as e:
        # A list/dict setting that is not valid JSON fails before validation, naming only the field.
        field = re.search(r'field "(\w+)"', str(e))
        name = f"{prefix}{field.group(1).upper()}" if field else f"a {prefix}* variable"
        fail(service, EXIT_CONFIG, "invalid configuration", [f"{name}: not valid JSON"])


def migrating(service: str, database_var: str, run: Callable[[], None]) -> None:
    """Run a migration step; an unreachable or refusing database exits 3 naming `database_var`."""
    try:
        run()
    except (OSError, TimeoutError) as e:
        fail(service, EXIT_DEPENDENCY, "database unreachable", [f"{database_var}: {type(e).__name__}: {e}"])
    except Exception as e:
        if type(e).__module__.startswith(("sqlalchemy", "asyncpg")):
            fail(service, EXIT_DEPENDENCY, "database migration failed",
                 [f"{type(e).__name__}: {str(e).splitlines()[0]}"])
        raise

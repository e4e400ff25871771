"""What the stand-ins' command lines share: settings from `<PREFIX>_*` variables, a refusal of
weak secrets where the stand-in is reachable from more than this machine, and failing with a
message that names each problem's variable (never its value) and exit code 2.

The platform has the same rules in app/common; the stand-ins keep their own copy because they
are not part of the platform under test and must not import it.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn, TypeVar

from pydantic import ValidationError, model_validator
from pydantic_settings import BaseSettings
from pydantic_settings.exceptions import SettingsError

EXIT_CONFIG = 2
MIN_SECRET_LEN = 16
_COMMON = {"changeme", "password", "secret", "postgres", "admin", "redis", "default", "test", "letmein"}

Environment = Literal["local", "docker", "staging", "production"]


class StandinSettings(BaseSettings):
    """`env`, and secrets that may also come as files (`<PREFIX>_<NAME>_FILE`), as container secrets do."""

    secret_fields: ClassVar[tuple[str, ...]] = ()

    env: Environment = "local"
    version: str = "0.1.0"

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in cls.secret_fields:
            path = os.environ.get(f"{cls.model_config['env_prefix']}{name.upper()}_FILE")
            if path and not data.get(name):
                data[name] = Path(path).read_text().strip()
        return data

    @property
    def is_local(self) -> bool:
        return self.env == "local"

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None


S = TypeVar("S", bound=BaseSettings)


def fail(service: str, headline: str, problems: list[str]) -> NoReturn:
    print(f"{service}: {headline}:", *(f"  - {p}" for p in problems), sep="\n", file=sys.stderr)
    sys.exit(EXIT_CONFIG)


def _variable(prefix: str, loc: tuple[int | str, ...]) -> str:
    """OIDC_STANDIN_CLIENTS[platform-auth].secret: the variable, then where inside its JSON value."""
    inner = "".join(f"[{p}]" if i == 0 else f".{p}" for i, p in enumerate(loc[1:]))
    return f"{prefix}{str(loc[0]).upper()}{inner}"


def load_settings(cls: type[S], service: str) -> S:
    prefix = str(cls.model_config.get("env_prefix", ""))
    try:
        return cls()
    except ValidationError as e:
        fail(service, "invalid configuration", [
            f"{_variable(prefix, err['loc'])}: {err['msg']}" if err["loc"]
            else str(err["msg"]).removeprefix("Value error, ") for err in e.errors()])
    except SettingsError as e:
        # A list/dict setting that is not valid JSON fails before validation, naming only the field.
        field = re.search(r'field "(\w+)"', str(e))
        name = f"{prefix}{field.group(1).upper()}" if field else f"a {prefix}* variable"
        fail(service, "invalid configuration", [f"{name}: not valid JSON"])


def check_secret(problems: list[str], name: str, value: str | None, min_len: int = MIN_SECRET_LEN) -> None:
    """Append why `value` cannot serve as the secret `name` (missing, or weak) to `problems`."""
    if not value:
        problems.append(f"{name} is missing")
    elif len(value) < min_len:
        problems.append(f"{name} is weak (shorter than {min_len} characters)")
    elif value.lower().rstrip("0123456789!") in _COMMON or len(set(value)) < 6:
        problems.append(f"{name} is weak (a well-known or low-variety value)")

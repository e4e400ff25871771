"""Checks every service's startup validation shares: is a secret present, and is it strong."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MIN_SECRET_LEN = 16
_COMMON = {"changeme", "password", "secret", "postgres", "admin", "redis", "default", "test", "letmein"}


def weak(secret: str, min_len: int = MIN_SECRET_LEN) -> str | None:
    if len(secret) < min_len:
        return f"shorter than {min_len} characters"
    if secret.lower().rstrip("0123456789!") in _COMMON or len(set(secret)) < 6:
        return "a well-known or low-variety value"
    return None


def check_secret(problems: list[str], name: str, value: str | None, min_len: int = MIN_SECRET_LEN) -> None:
    """Append why `value` cannot serve as the secret `name` (missing, or weak) to `problems`."""
    if not value:
        problems.append(f"{name} is missing")
    elif reason := weak(value, min_len):
        problems.append(f"{name} is weak ({reason})")


def url_password(url: str) -> str | None:
    """The password in a database URL (`postgresql://user:pw@host/db`), decoded; None without one.
    Parsed here rather than by SQLAlchemy, whose import would double the time a refusal takes."""
    password = urlsplit(url).password
    return unquote(password) if password is not None else None

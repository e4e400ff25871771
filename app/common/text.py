"""Text the platform can store: PostgreSQL refuses NUL characters, and unpaired surrogates
(valid in JSON `\\ud800` escapes) cannot be encoded as UTF-8. Refused as bad input, never a 500."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None."""
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "must not contain unpaired surrogates"
    return None


def _check(text: str) -> str:
    if reason := unstorable(text):
        raise ValueError(reason)
    return text


StorableStr = Annotated[str, AfterValidator(_check)]

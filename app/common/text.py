"""Text the platform can store: PostgreSQL refuses NUL characters, and unpaired surrogates
(valid in JSON `\\ud800` escapes) cannot be encoded as UTF-8. Refused as bad input, never a 500."""

from __future__ import annotations

from typing import Annotated, Any

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


def storable(value: Any) -> Any:
    """`value` (JSON-like) with NULs and unpaired surrogates replaced, for text that arrives from
    a model or a tool rather than from a request that could be refused."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode() if unstorable(value) else value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value

"""A deterministic token estimate: words and punctuation marks.

Not any provider's tokenizer: the platform bills the usage the provider reports. This estimate
only decides how much thread history fits the prompt, and is what the LLM stand-in reports as
usage, so a check can recount an answer's tokens from the request log.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count(text: str) -> int:
    return len(_TOKEN.findall(text))

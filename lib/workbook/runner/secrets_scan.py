"""Secrets in outputs: redact them where the runner writes, then prove none is left anywhere.

A check that prints a password rarely prints it raw: it prints a DSN (URL-encoded inside it),
a base64 Basic-auth header, a JSON dump. So every secret the env resolved is looked for in
each common encoding. base64 is the subtle one: a secret inside a longer encoded text (a DSN
turned into a Kubernetes secret) shows up as one of three strings depending on its offset
modulo 3, each without the characters its neighbours share; all three are looked for.

`scrub_*` redacts in the files the runner owns (ledgers, executed notebooks, messages);
`scan` reads every file a run wrote, byte for byte, and reports where and in which encoding
a secret is, never the value.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from workbook.params import Env
from workbook.results import SecretHit

REDACTED = "[redacted]"
# Below this, an encoded form (a base64 fragment of a few characters) would turn up by chance
# in any large file (report.html carries plotly.js); such a secret is still looked for raw.
MIN_ENCODED_LEN = 8
# scheme://user:SECRET@host, SECRET in any of the encodings below.
_DSN = re.compile(rb"[a-z][a-z0-9+.-]*://[^\s:/@]*:([^\s@/]+)@", re.I)


@dataclass(frozen=True)
class Variant:
    encoding: str
    text: str


def _b64_fragments(raw: bytes) -> list[str]:
    """What base64 of any text containing `raw` must contain, for each offset modulo 3."""
    out = []
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + raw).decode()
        first = -(-pad * 8 // 6)  # characters still holding bits of the padding
        last = (pad + len(raw)) * 8 // 6  # characters holding only bits of `raw`
        out.append(enc[first:last])
    return out


def variants(secret: str) -> list[Variant]:
    """The forms `secret` takes in common encodings, longest first (so scrubbing one never
    leaves a piece of a longer one behind)."""
    found: dict[str, str] = {secret: "raw"}
    if len(secret) >= MIN_ENCODED_LEN:
        for text in (quote(secret, safe=""), quote(secret), quote_plus(secret)):
            found.setdefault(text, "url")
        for text in (json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]):
            found.setdefault(text, "json")
        # A DSN is URL-encoded before it is base64- or hex-encoded as a whole.
        for text in [t for t, enc in found.items() if enc in ("raw", "url")]:
            raw = text.encode()
            for frag in _b64_fragments(raw):
                found.setdefault(frag, "base64")
                found.setdefault(frag.replace("+", "-").replace("/", "_"), "base64url")
            found.setdefault(raw.hex(), "hex")
            found.setdefault(raw.hex().upper(), "hex")
    return sorted((Variant(enc, text) for text, enc in found.items() if text),
                  key=lambda v: len(v.text), reverse=True)


def env_secrets(env: Env) -> dict[str, str]:
    """Every secret value the env resolved, by where it came from."""
    return {f"services.{name}": value for name, svc in env.services.items() if (value := svc.secret())}


def scrub_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        for v in variants(secret):
            text = text.replace(v.text, REDACTED)
    return text


def scrub_file(path: Path, secrets: list[str]) -> None:
    """Redact every encoding of every secret in a text file the runner wrote."""
    if not secrets or not path.is_file():
        return
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    clean = scrub_text(text, secrets)
    if clean != text:
        path.write_text(clean, encoding="utf-8", errors="surrogateescape")


def _scan_bytes(data: bytes, secrets: dict[str, str]) -> list[tuple[str, str]]:
    """(encoding, secret name) for every secret in `data`; a DSN hit names "dsn"."""
    hits: list[tuple[str, str]] = []
    in_dsn = {m.group(1) for m in _DSN.finditer(data)}
    for name, secret in secrets.items():
        for v in variants(secret):
            form = v.text.encode()
            if form in data:
                dsn = v.encoding in ("raw", "url") and any(form in part for part in in_dsn)
                hits.append(("dsn" if dsn else v.encoding, name))
    return list(dict.fromkeys(hits))


def scan(run_dir: Path, files: list[Path], secrets: dict[str, str]) -> tuple[int, list[SecretHit]]:
    """Read each file whole, as bytes; (files read, hits named relative to `run_dir`)."""
    hits = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        rel = path.relative_to(run_dir).as_posix() if path.is_relative_to(run_dir) else str(path)
        hits += [SecretHit(file=rel, encoding=enc, secret=name) for enc, name in _scan_bytes(data, secrets)]
    return len(files), hits

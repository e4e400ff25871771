"""Signing keys in a key directory: one active key signs, older ones verify until retired.

Layout: `<kid>.pem` (EC P-256 private key, mode 0600) per key and `keys.json` with each key's
state. Instances sharing the directory pick up a rotation on their next sign/verify (the
index's mtime is checked), and rotation takes a file lock.

A rotated-in key is published at once but signs only from `not_before` on: verifiers that
cached the JWKS a moment before the rotation have fetched it again by then, so no token is
refused because its key was still unknown somewhere. The active key is the newest one whose
`not_before` has passed. Retiring a key deletes its private key file: nothing can sign with
it again.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from filelock import FileLock
from jwt.algorithms import ECAlgorithm


class KeyRingError(Exception):
    """A key problem the caller reports (no active key, unknown kid, retiring the active key)."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: ec.EllipticCurvePrivateKey | None  # None once retired
    public: ec.EllipticCurvePublicKey
    created: float
    not_before: float  # signs from then on; published from `created`
    retired: float | None

    def jwk(self) -> dict[str, Any]:
        jwk = json.loads(ECAlgorithm.to_jwk(self.public))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "ES256"}


class KeyRing:
    def __init__(self, directory: Path):
        self.dir = directory
        self.index = directory / "keys.json"
        self._mtime: float | None = None
        self._keys: dict[str, SigningKey] = {}

    def _lock(self) -> FileLock:
        return FileLock(str(self.dir / ".keys.lock"), timeout=30)

    def reload(self) -> None:
        try:
            mtime = self.index.stat().st_mtime_ns
        except FileNotFoundError:
            self._mtime, self._keys = None, {}
            return
        if mtime == self._mtime:
            return
        data = json.loads(self.index.read_text())
        keys = {}
        for kid, meta in data["keys"].items():
            public = serialization.load_pem_public_key(meta["public_pem"].encode())
            assert isinstance(public, ec.EllipticCurvePublicKey)
            private = None
            if meta.get("retired") is None:
                loaded = serialization.load_pem_private_key((self.dir / f"{kid}.pem").read_bytes(), None)
                if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
                    raise KeyRingError(f"key {kid} is not an EC P-256 key (ES256 needs one)")
                private = loaded
            keys[kid] = SigningKey(kid, private, public, meta["created"], meta.get("not_before", meta["created"]),
                                   meta.get("retired"))
        self._mtime, self._keys = mtime, keys

    def active(self) -> SigningKey:
        """The newest key whose `not_before` has passed."""
        self.reload()
        now = time.time()
        ready = [k for k in self._keys.values() if k.private is not None and k.not_before <= now]
        if not ready:
            raise KeyRingError(f"no active signing key in {self.dir}")
        return max(ready, key=lambda k: (k.not_before, k.created))

    def verifying(self, kid: str) -> SigningKey | None:
        """The key that may verify tokens with this kid: known and not retired."""
        self.reload()
        key = self._keys.get(kid)
        return key if key is not None and key.retired is None else None

    def published(self) -> list[SigningKey]:
        self.reload()
        return [k for k in self._keys.values() if k.retired is None]

    def all(self) -> list[SigningKey]:
        self.reload()
        return list(self._keys.values())

    def rotate(self, signs_after_s: float = 0.0) -> SigningKey:
        """A new key, published now and signing after `signs_after_s`; the previous one keeps
        verifying until retired. The first key (nothing signs yet) signs at once. Returns the new key."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            data = self._read_index()
            kid = f"{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(4)}"
            private = ec.generate_private_key(ec.SECP256R1())
            pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            fd = os.open(self.dir / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
            public_pem = private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
            now = time.time()
            try:
                self.active()
            except KeyRingError:
                signs_after_s = 0.0
            data["keys"][kid] = {"created": now, "not_before": now + signs_after_s, "retired": None,
                                 "public_pem": public_pem}
            self._write_index(data)
        self.reload()
        return self._keys[kid]

    def retire(self, kid: str) -> None:
        with self._lock():
            data = self._read_index()
            if kid not in data["keys"]:
                raise KeyRingError(f"no key {kid}")
            if self.active().kid == kid:
                raise KeyRingError(f"key {kid} is the active signing key: rotate first")
            data["keys"][kid]["retired"] = time.time()
            (self.dir / f"{kid}.pem").unlink(missing_ok=True)
            self._write_index(data)

    def ensure(self) -> None:
        """Create a first key if the directory has none (the dev-only `generate_keys` switch)."""
        self.reload()
        if not self._keys:
            self.rotate()

    def _read_index(self) -> dict[str, Any]:
        return json.loads(self.index.read_text()) if self.index.is_file() else {"keys": {}}

    def _write_index(self, data: dict[str, Any]) -> None:
        tmp = self.index.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.index)
        self._mtime = None  # this instance reloads on next use

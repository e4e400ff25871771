"""The OIDC test provider (oidc-provider-mock): a real OpenID Connect server for tests."""

from __future__ import annotations

import shutil
import sys
from importlib.metadata import version
from pathlib import Path

import httpx

from workbook.stack.service import Launch, ServiceSpec
from workbook.stack.state import Paths


class OidcProvider(ServiceSpec):
    name = "oidc"

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        script = shutil.which("oidc-provider-mock") or str(Path(sys.executable).parent / "oidc-provider-mock")
        return Launch(argv=[script, "--host", "127.0.0.1", "--port", str(port), "--require-nonce", "true"],
                      env={"PYTHONWARNINGS": "ignore::DeprecationWarning"})

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def probe(self, url: str, password: str, timeout: float) -> str:
        r = httpx.get(f"{url}/.well-known/openid-configuration", timeout=timeout)
        r.raise_for_status()
        issuer = r.json()["issuer"]
        if not issuer.startswith("http"):
            raise RuntimeError(f"unexpected issuer {issuer!r}")
        return f"oidc-provider-mock {version('oidc-provider-mock')}"

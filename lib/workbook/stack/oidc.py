"""The OIDC provider: the stand-in `python -m standins.oidc`, a real OpenID Connect server that
enforces what Google or Okta enforce (registered clients, exact redirect URIs, PKCE S256, nonce,
single-use codes).

The password the stack hands it is its registration token (RFC 7591's initial access token): a
platform service registers its OAuth client, with its real callback URL, when it is prepared
(`register_client`), since its port is only known then.
"""

from __future__ import annotations

import sys

import httpx

from workbook.stack.service import Launch, ServiceSpec
from workbook.stack.state import Paths


class OidcProvider(ServiceSpec):
    name = "oidc"

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        data = paths.data(self.name)
        data.mkdir(parents=True, exist_ok=True)
        return Launch(argv=[sys.executable, "-m", "standins.oidc", "--host", "127.0.0.1", "--port", str(port),
                            "--issuer", self.url(port), "--data-dir", str(data)],
                      env={"OIDC_STANDIN_ENV": "local", "OIDC_STANDIN_REGISTRATION_TOKEN": password})

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def probe(self, url: str, password: str, timeout: float) -> str:
        r = httpx.get(f"{url}/.well-known/openid-configuration", timeout=timeout)
        r.raise_for_status()
        if (issuer := r.json()["issuer"]) != url:
            raise RuntimeError(f"issuer {issuer!r}, expected {url!r}")
        health = httpx.get(f"{url}/health", timeout=timeout)
        health.raise_for_status()
        return f"standins.oidc {health.json()['version']}"


def register_client(provider_url: str, registration_token: str, name: str, redirect_uri: str,
                    timeout: float = 10.0) -> tuple[str, str]:
    """Register a confidential client for the code flow with one redirect URI at the provider's
    registration endpoint; returns the (client_id, client_secret) it issued. Registering again
    with the same name and URI replaces the earlier registration."""
    meta = httpx.get(f"{provider_url}/.well-known/openid-configuration", timeout=timeout)
    meta.raise_for_status()
    r = httpx.post(meta.json()["registration_endpoint"], timeout=timeout,
                   headers={"Authorization": f"Bearer {registration_token}"},
                   json={"client_name": name, "redirect_uris": [redirect_uri], "grant_types": ["authorization_code"],
                         "response_types": ["code"], "token_endpoint_auth_method": "client_secret_basic"})
    if r.status_code != 201:
        raise RuntimeError(f"the OIDC provider refused to register {name}: {r.status_code} {r.text[:200]}")
    body = r.json()
    return body["client_id"], body["client_secret"]

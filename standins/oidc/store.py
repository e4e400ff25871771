"""The provider's state: clients, codes, tokens and the signing key.

One `Store` per app, shared by werkzeug's request threads under one lock. Registered clients
and the signing key are kept in the data dir (when there is one), so a restarted provider
still knows the clients that registered with it and still verifies the ID tokens it signed;
codes and tokens live in memory, as short-lived as they are.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict
from pathlib import Path

from joserfc.jwk import RSAKey

from standins.oidc.models import AuthorizationCode, Client, Token, secret_hash
from standins.oidc.settings import OidcStandinSettings

# Each registration is one client; a service that registers on every start would pile them
# up, so the least recently used go first past this many.
MAX_REGISTERED = 500


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def signing_key(data_dir: Path | None) -> RSAKey:
    """The RS256 key, made on first start and kept (0600) in the data dir."""
    path = data_dir / "signing-key.json" if data_dir else None
    if path and path.is_file():
        return RSAKey.import_key(json.loads(path.read_text()))
    key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
    if path:
        _write_private(path, json.dumps(key.as_dict(private=True)))
    return key


class Store:
    def __init__(self, settings: OidcStandinSettings, data_dir: Path | None):
        self.settings = settings
        self.data_dir = data_dir
        if data_dir:
            data_dir.mkdir(parents=True, exist_ok=True)
        self.key = signing_key(data_dir)
        self._lock = threading.Lock()
        self._configured = {
            cid: Client(cid, secret_hash(c.secret.get_secret_value()), tuple(c.redirect_uris),
                        c.token_endpoint_auth_method)
            for cid, c in settings.clients.items()}
        self._registered = {c.client_id: c for c in self._load()}
        self._codes: dict[str, AuthorizationCode] = {}
        self._tokens: dict[str, Token] = {}

    @property
    def _clients_file(self) -> Path | None:
        return self.data_dir / "clients.json" if self.data_dir else None

    def _load(self) -> list[Client]:
        path = self._clients_file
        if path is None or not path.is_file():
            return []
        return [Client(**{**c, "redirect_uris": tuple(c["redirect_uris"])}) for c in json.loads(path.read_text())]

    def _save(self) -> None:
        if path := self._clients_file:
            _write_private(path, json.dumps([asdict(c) for c in self._registered.values()], indent=1))

    def client(self, client_id: str) -> Client | None:
        with self._lock:
            return self._configured.get(client_id) or self._registered.get(client_id)

    def register(self, client: Client) -> None:
        """Add a registered client. One with the same name and redirect URIs is that service
        registering again after a restart: it replaces its earlier registration."""
        with self._lock:
            for old in list(self._registered.values()):
                if (old.name, old.redirect_uris) == (client.name, client.redirect_uris):
                    del self._registered[old.client_id]
            self._registered[client.client_id] = client
            for old in sorted(self._registered.values(), key=lambda c: c.last_used)[:-MAX_REGISTERED]:
                del self._registered[old.client_id]
            self._save()

    def save_code(self, code: AuthorizationCode) -> None:
        with self._lock:
            now = time.time()
            # A code's record outlives the code as long as the tokens it bought: a late replay
            # must still be recognised (and revoke them), and its nonce stays taken meanwhile.
            keep = self.settings.token_ttl_s
            for key in [k for k, c in self._codes.items() if c.expires_at + keep < now]:
                del self._codes[key]
            for key in [k for k, t in self._tokens.items() if t.issued_at + t.expires_in < now]:
                del self._tokens[key]
            self._codes[code.code] = code
            if client := self._registered.get(code.client_id):
                client.last_used = now

    def take_code(self, code: str, client_id: str) -> AuthorizationCode | None:
        """The code if it is live and was issued to this client, spending it: a code is good
        for one exchange, which is its first, whether or not that exchange succeeds."""
        with self._lock:
            found = self._codes.get(code)
            if found is None or found.client_id != client_id:
                return None
            if found.spent:
                for access in found.tokens:
                    if token := self._tokens.get(access):
                        token.revoked = True
                return None
            found.spent = True
            return found if time.time() < found.expires_at else None

    def nonce_used(self, client_id: str, nonce: str) -> bool:
        with self._lock:
            return any(c.client_id == client_id and c.nonce == nonce for c in self._codes.values())

    def save_token(self, token: Token, code: AuthorizationCode) -> None:
        with self._lock:
            self._tokens[token.access_token] = token
            code.tokens.append(token.access_token)

    def token(self, access_token: str) -> Token | None:
        with self._lock:
            return self._tokens.get(access_token)

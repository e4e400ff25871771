"""The platform's HTTP API, the only place notebooks talk to it (a different API adapts here).

    platform = auth(wb)                      # an AsyncAuth for the env's `auth` service
    api = backend(wb)                        # an AsyncBackend for the env's `backend` service
    model = llm(wb)                          # the model provider: the stand-in's request log and faults
    user = await platform.new_user(ck)       # registered + logged in, under ck.ns, cleaned up
    me = await api.me(user.access)
    resp = await platform.post("/auth/refresh", json={...})   # raw: an httpx.Response

Typed helpers raise `PlatformError` (status and body in the message, never a secret) when the
service does not answer as the happy path expects; the raw helpers (`request`, `get`, `post`,
`patch`, `delete`, and the `*_raw` calls) return the `httpx.Response` for negative checks.

Every call names a client IP through `X-Forwarded-For` (the auth service trusts it from the
stack's loopback proxy): each throwaway user gets its own address from 198.18.0.0/15 (the
benchmarking range), so per-IP login limits of parallel checks never meet.
"""

from workbook.clients.platform.auth import AsyncAuth, auth
from workbook.clients.platform.backend import AsyncBackend, backend, metric
from workbook.clients.platform.llm import AsyncLlm, llm
from workbook.clients.platform.oidc import OidcFlow, oidc_flow, state_key
from workbook.clients.platform.common import (PlatformError, Tokens, User, forge, new_password, random_ip, redact,
                                              rejected, unique_email)
from workbook.clients.platform.ws import run_events

__all__ = ["AsyncAuth", "AsyncBackend", "AsyncLlm", "OidcFlow", "PlatformError", "Tokens", "User", "auth", "backend", "forge", "llm", "metric", "new_password",
           "oidc_flow", "random_ip", "redact", "rejected", "run_events", "state_key", "unique_email"]

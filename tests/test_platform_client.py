"""workbook.clients.platform's pure parts; every request it makes is exercised against the
real auth service by notebooks/01_auth.ipynb."""

from __future__ import annotations

import ipaddress
import re

from app.auth.schemas import EMAIL
from workbook.clients import platform


def test_unique_email_is_valid_for_the_service_and_unique() -> None:
    ns = "wb_20261124054533_auth_database_integrity_concurrent_duplicate_registration"[:63]
    emails = {platform.unique_email(ns) for _ in range(50)}
    assert len(emails) == 50
    assert all(re.match(EMAIL, e) and len(e.split("@")[0]) <= 64 for e in emails)


def test_random_ip_is_in_the_benchmark_range() -> None:
    net = ipaddress.ip_network("198.18.0.0/15")
    assert all(ipaddress.ip_address(platform.random_ip()) in net for _ in range(100))


def test_reprs_hide_passwords_and_tokens() -> None:
    user = platform.User(id="u", email="e@x.test", password="pw-secret", ip="198.18.0.1",
                         tokens=platform.Tokens("acc-token", "ref-token", "s1", 900))
    text = repr(user)
    assert "pw-secret" not in text and "acc-token" not in text and "ref-token" not in text


def test_redact_removes_every_jwt() -> None:
    token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"
    text = f'{{"access_token": "{token}", "detail": "x"}} Bearer {token}'
    out = platform.redact(text)
    assert token not in out and out.count("<jwt>") == 2 and '"detail": "x"' in out


def test_forge_edits_claims_and_keeps_or_replaces_the_signature() -> None:
    import jwt

    token = jwt.encode({"sub": "u1", "role": "member"}, "k" * 32, algorithm="HS256", headers={"kid": "a"})
    edited = platform.forge(token, claims={"role": "owner"})
    assert jwt.decode(edited, options={"verify_signature": False}) == {"sub": "u1", "role": "owner"}
    assert edited.split(".")[2] == token.split(".")[2]
    unsigned = platform.forge(token, header={"alg": "none"}, signature="")
    assert jwt.get_unverified_header(unsigned) == {"alg": "none", "kid": "a", "typ": "JWT"}
    assert unsigned.endswith(".")


def test_closed_notices_a_dead_peer_behind_unread_messages() -> None:
    import asyncio
    import json

    from websockets.asyncio.server import serve

    from workbook.clients.platform.ws import open_socket

    async def crashing_server(ws) -> None:  # type: ignore[no-untyped-def]
        await ws.send(json.dumps({"type": "connection_established"}))
        for i in range(100):  # more than the client queues unread: its transport pauses reading
            await ws.send(json.dumps({"type": "tick", "i": i}))
        ws.transport.abort()  # as a SIGKILLed server: no closing handshake

    async def scenario() -> tuple[int | None, int]:
        async with serve(crashing_server, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            sock = await open_socket(f"http://127.0.0.1:{port}", 5, None)
            await asyncio.sleep(0.3)
            code, _ = await sock.closed(2)
            ticks = [(await sock.next())["i"] for _ in range(100)]
            return code, ticks == list(range(100))

    assert asyncio.run(scenario()) == (1006, True)

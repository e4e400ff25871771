"""Token issuing and verification: claims, rotation, retirement, algorithm confusion."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.auth.keys import KeyRing, KeyRingError
from app.auth.tokens import TokenService
from app.common.jwt_rules import InvalidToken


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    r = KeyRing(tmp_path / "keys")
    r.rotate()
    return r


@pytest.fixture
def svc(ring: KeyRing) -> TokenService:
    return TokenService(ring, "https://auth.test", "platform", leeway_s=5)


def b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_issued_token_carries_every_required_claim(svc: TokenService, ring: KeyRing) -> None:
    issued = svc.issue("user-1", "access", 60, role="member", permissions=["threads:read"], sid="s1")
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "ES256" and header["kid"] == ring.active().kid
    claims = svc.verify(issued.token, "access")
    for name in ("iss", "aud", "exp", "iat", "jti", "sub", "type", "role", "permissions"):
        assert name in claims, name
    assert claims["exp"] - claims["iat"] == 60 and claims["type"] == "access"


def test_wrong_type_audience_issuer_and_expiry_are_refused(svc: TokenService, ring: KeyRing) -> None:
    refresh = svc.issue("u", "refresh", 60).token
    with pytest.raises(InvalidToken, match="refresh token is not accepted"):
        svc.verify(refresh, "access")
    with pytest.raises(InvalidToken, match="wrong audience"):
        TokenService(ring, "https://auth.test", "other", leeway_s=5).verify(svc.issue("u", "access", 60).token, "access")
    with pytest.raises(InvalidToken, match="wrong issuer"):
        TokenService(ring, "https://evil.test", "platform", leeway_s=5).verify(svc.issue("u", "access", 60).token, "access")
    with pytest.raises(InvalidToken, match="expired"):
        svc.verify(svc.issue("u", "access", -60).token, "access")


def test_tampered_payload_is_refused(svc: TokenService) -> None:
    head, payload, sig = svc.issue("u", "access", 60, role="viewer").token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = f"{head}.{b64({**claims, 'role': 'owner'})}.{sig}"
    with pytest.raises(InvalidToken, match="invalid token"):
        svc.verify(forged, "access")


def test_alg_none_and_hs256_with_public_key_are_refused(svc: TokenService, ring: KeyRing) -> None:
    claims = svc.verify(svc.issue("u", "access", 60).token, "access")
    kid = ring.active().kid
    none_token = f"{b64({'alg': 'none', 'kid': kid})}.{b64(claims)}."
    with pytest.raises(InvalidToken, match="'none' not accepted"):
        svc.verify(none_token, "access")
    public_pem = ring.active().public.public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    import hashlib
    import hmac
    signing_input = f"{b64({'alg': 'HS256', 'kid': kid, 'typ': 'JWT'})}.{b64(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    hs_token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match="'HS256' not accepted"):
        svc.verify(hs_token, "access")


def test_token_signed_by_a_foreign_key_with_our_kid_is_refused(svc: TokenService, ring: KeyRing) -> None:
    claims = svc.verify(svc.issue("u", "access", 60).token, "access")
    foreign = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                         headers={"kid": ring.active().kid})
    with pytest.raises(InvalidToken):
        svc.verify(foreign, "access")
    unknown_kid = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                             headers={"kid": "nope"})
    with pytest.raises(InvalidToken, match="unknown or retired"):
        svc.verify(unknown_kid, "access")


def test_rotation_keeps_old_tokens_valid_until_the_old_key_retires(svc: TokenService, ring: KeyRing) -> None:
    old_kid = ring.active().kid
    old = svc.issue("u", "access", 60).token
    ring.rotate()
    new = svc.issue("u", "access", 60).token
    assert jwt.get_unverified_header(new)["kid"] != old_kid
    assert svc.verify(old, "access")["sub"] == "u"
    assert {k.kid for k in ring.published()} == {old_kid, ring.active().kid}
    ring.retire(old_kid)
    with pytest.raises(InvalidToken, match="retired"):
        svc.verify(old, "access")
    assert svc.verify(new, "access")["sub"] == "u"
    assert old_kid not in {k.kid for k in ring.published()}
    assert not (ring.dir / f"{old_kid}.pem").exists()


def test_active_key_cannot_be_retired_and_rotation_is_seen_by_another_instance(ring: KeyRing) -> None:
    with pytest.raises(KeyRingError, match="active signing key"):
        ring.retire(ring.active().kid)
    other = KeyRing(ring.dir)  # a second process sharing the key dir
    assert other.active().kid == ring.active().kid
    time.sleep(0.01)
    ring.rotate()
    assert other.active().kid == ring.active().kid


def test_jwks_holds_no_private_material(ring: KeyRing) -> None:
    jwk = ring.active().jwk()
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert (ring.dir / f"{ring.active().kid}.pem").stat().st_mode & 0o077 == 0


def test_a_non_p256_key_file_is_refused(ring: KeyRing) -> None:
    kid = ring.active().kid
    rsa_pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (ring.dir / f"{kid}.pem").write_bytes(rsa_pem)
    with pytest.raises(KeyRingError, match="not an EC P-256 key"):
        KeyRing(ring.dir).active()


def test_rotated_key_is_published_before_it_signs(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys")
    first = ring.rotate(signs_after_s=30)
    assert ring.active().kid == first.kid, "the first key must sign at once"
    nxt = ring.rotate(signs_after_s=0.3)
    assert {k.kid for k in ring.published()} == {first.kid, nxt.kid}
    assert ring.active().kid == first.kid, "a rotated-in key signed before its not_before"
    with pytest.raises(KeyRingError, match="active signing key"):
        ring.retire(first.kid)
    time.sleep(0.35)
    assert ring.active().kid == nxt.kid
    ring.retire(first.kid)


def test_leeway_is_the_configured_one(ring: KeyRing) -> None:
    """A token 3 s past `exp` passes a verifier allowing 5 s of skew and fails one allowing 1 s."""
    lenient = TokenService(ring, "https://auth.test", "platform", leeway_s=5)
    strict = TokenService(ring, "https://auth.test", "platform", leeway_s=1)
    token = lenient.issue("u", "access", -3).token
    assert lenient.verify(token, "access")["sub"] == "u"
    with pytest.raises(InvalidToken, match="expired"):
        strict.verify(token, "access")

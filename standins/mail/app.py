"""The SMTP server (aiosmtpd, its own thread) and the read API (FastAPI) over one mailbox."""

from __future__ import annotations

import hmac
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session, SMTP
from fastapi import Depends, FastAPI, HTTPException, Query, Request

from standins.mail.settings import MailStandinSettings
from standins.mail.store import Mailbox


class Handler:
    def __init__(self, box: Mailbox):
        self.box = box

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        auth = session.auth_data
        user = auth.login.decode() if isinstance(auth, LoginPassword) else None
        self.box.deliver(envelope.mail_from or "", list(envelope.rcpt_tos), content, user)
        return "250 Message accepted for delivery"


def authenticator(settings: MailStandinSettings):  # type: ignore[no-untyped-def]
    """Only the configured login may send: a platform with wrong SMTP credentials fails to, loudly."""
    want_user, want_pw = settings.user.encode(), (settings.secret("password") or "").encode()

    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and hmac.compare_digest(data.login, want_user)
              and hmac.compare_digest(data.password, want_pw))
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    return check


def smtp_controller(settings: MailStandinSettings, box: Mailbox, host: str) -> Controller:
    # No TLS locally: the stand-in listens on 127.0.0.1 only (auth_require_tls off for that reason).
    return Controller(Handler(box), hostname=host, port=settings.smtp_port, auth_required=True,
                      auth_require_tls=False, authenticator=authenticator(settings))


def create_app(settings: MailStandinSettings, box: Mailbox) -> FastAPI:
    app = FastAPI(title="mail-standin", version=settings.version, docs_url=None, redoc_url=None)
    key = (settings.secret("password") or "").encode()

    def bearer(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
            raise HTTPException(401, "send Authorization: Bearer <mail stand-in password>")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": settings.version, "smtp_port": settings.smtp_port}

    @app.get("/_standin/messages", dependencies=[Depends(bearer)])
    async def messages(to: str = Query(min_length=3)) -> dict[str, Any]:
        return {"messages": box.read(to)}

    @app.delete("/_standin/messages", dependencies=[Depends(bearer)])
    async def clear(to: str = Query(min_length=3)) -> dict[str, int]:
        return {"deleted": box.clear(to)}

    return app

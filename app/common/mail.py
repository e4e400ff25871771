"""Sending email through the SMTP relay the settings name (stdlib smtplib, in a worker thread).

Both services send: auth the verification and password-reset emails, the backend team
invitations. An email carries its link's token and nothing else secret.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from email.message import EmailMessage

from app.common.settings import MailSettings

log = logging.getLogger("app.mail")


class MailNotConfigured(Exception):
    pass


class Mailer:
    def __init__(self, settings: MailSettings, timeout_s: float):
        self.settings, self.timeout_s = settings, timeout_s

    @property
    def configured(self) -> bool:
        return self.settings.smtp_host is not None

    async def send(self, to: str, subject: str, text: str) -> None:
        """Hand one message to the relay; raises (MailNotConfigured, smtplib/OS errors) if it is not taken."""
        if not self.configured:
            raise MailNotConfigured("no SMTP relay is configured (smtp_host)")
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.settings.mail_from, to, subject
        msg.set_content(text)
        await asyncio.to_thread(self._send, msg)
        log.info("email %r sent to one recipient", subject)

    def _send(self, msg: EmailMessage) -> None:
        s = self.settings
        host, port = s.smtp_host or "", s.smtp_port
        smtp: smtplib.SMTP
        if s.smtp_tls == "tls":
            smtp = smtplib.SMTP_SSL(host, port, timeout=self.timeout_s, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(host, port, timeout=self.timeout_s)
        with smtp:
            if s.smtp_tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_user:
                smtp.login(s.smtp_user, s.secret("smtp_password") or "")
            smtp.send_message(msg)

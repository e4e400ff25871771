"""The SMTP stand-in as the stack starts it: it takes mail only from the configured login, as a
real relay does, and shows a recipient's messages only to who holds its password."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest

from workbook.stack.mail import SMTP_USER, MailStandin
from workbook.stack.manager import Stack
from workbook.stack.state import stack_secret


@pytest.fixture(scope="module")
def mail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, str]]:
    """(read API URL, SMTP port, password) of a mail stand-in the stack started."""
    stack = Stack(root=tmp_path_factory.mktemp("mailstack"), services=[MailStandin()])
    try:
        stack.up()
        url = stack.state().services["mail"].url
        yield url, httpx.get(f"{url}/health").json()["smtp_port"], stack_secret(stack.paths, "mail")
    finally:
        stack.down()


def _message(to: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "platform@example.test", to, "hello"
    msg.set_content("a link: https://app.example.test/verify?token=abc")
    return msg


def test_mail_without_login_is_refused(mail: tuple[str, int, str]) -> None:
    _, port, _ = mail
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp, pytest.raises(smtplib.SMTPSenderRefused) as e:
        smtp.send_message(_message("nobody@example.test"))
    assert e.value.smtp_code == 530


def test_wrong_password_is_refused(mail: tuple[str, int, str]) -> None:
    _, port, _ = mail
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp, pytest.raises(smtplib.SMTPAuthenticationError):
        smtp.login(SMTP_USER, "not-the-password")


def test_sent_mail_is_kept_per_recipient_behind_the_password(mail: tuple[str, int, str]) -> None:
    url, port, password = mail
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.login(SMTP_USER, password)
        smtp.send_message(_message("Ada@Example.test"))
    assert httpx.get(f"{url}/_standin/messages", params={"to": "ada@example.test"}).status_code == 401
    got = httpx.get(f"{url}/_standin/messages", params={"to": "ada@example.test"},
                    headers={"Authorization": f"Bearer {password}"}).json()["messages"]
    assert [(m["subject"], m["auth_user"]) for m in got] == [("hello", SMTP_USER)]
    assert "token=abc" in got[0]["text"]
    other = httpx.get(f"{url}/_standin/messages", params={"to": "bob@example.test"},
                      headers={"Authorization": f"Bearer {password}"}).json()["messages"]
    assert other == []

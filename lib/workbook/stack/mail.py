"""The SMTP stand-in (`python -m standins.mail`): a real SMTP server the platform sends its
verification, password-reset and invitation emails through, keeping them per recipient.

The stack's port is its read API (`/_standin/messages?to=`); SMTP listens on a second port,
kept across restarts in its data dir and reported by `/health` (`smtp_port`), which is where
auth and the backends read it when they are prepared. The password the stack hands it is both
the SMTP AUTH password of user `platform` and the read API's bearer token.
"""

from __future__ import annotations

import socket
import sys

import httpx

from workbook.stack.service import Launch, ServiceSpec
from workbook.stack.state import Paths

SMTP_USER = "platform"


class MailStandin(ServiceSpec):
    name = "mail"
    user = SMTP_USER
    start_timeout_s = 30.0

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        data = paths.data(self.name)
        data.mkdir(parents=True, exist_ok=True)
        kept = data / "smtp_port"
        smtp_port = _bindable(int(kept.read_text()) if kept.is_file() else 0)
        kept.write_text(str(smtp_port))
        return Launch(argv=[sys.executable, "-m", "standins.mail", "--host", "127.0.0.1", "--port", str(port)],
                      env={"MAIL_STANDIN_ENV": "local", "MAIL_STANDIN_USER": SMTP_USER,
                           "MAIL_STANDIN_PASSWORD": password, "MAIL_STANDIN_SMTP_PORT": str(smtp_port)})

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def probe(self, url: str, password: str, timeout: float) -> str:
        r = httpx.get(f"{url}/health", timeout=timeout)
        r.raise_for_status()
        return f"mail-standin {r.json()['version']} (smtp :{r.json()['smtp_port']})"


def _bindable(port: int) -> int:
    """`port` if it can be bound (the last run's, so a restart keeps it), else a free one.
    (workbook.stack.manager has the same helpers; importing it here would be circular.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def smtp_env(prefix: str, mail_url: str, password: str) -> dict[str, str]:
    """The SMTP settings a platform service (`AUTH_`, `BACKEND_`) needs to send through the stand-in."""
    smtp_port = httpx.get(f"{mail_url}/health", timeout=10).json()["smtp_port"]
    return {f"{prefix}SMTP_HOST": "127.0.0.1", f"{prefix}SMTP_PORT": str(smtp_port),
            f"{prefix}SMTP_TLS": "none", f"{prefix}SMTP_USER": SMTP_USER, f"{prefix}SMTP_PASSWORD": password}

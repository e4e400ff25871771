"""`python -m standins.mail --host H --port P`: SMTP on MAIL_STANDIN_SMTP_PORT, the read API on P."""

from __future__ import annotations

import argparse

from standins.config import check_secret, fail, load_settings
from standins.mail.settings import MailStandinSettings

SERVICE = "mail-standin"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m standins.mail")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    settings = load_settings(MailStandinSettings, SERVICE)
    problems: list[str] = []
    if not settings.is_local:
        check_secret(problems, "MAIL_STANDIN_PASSWORD", settings.secret("password"))
    if problems:
        fail(SERVICE, f"refusing to start in env={settings.env}", problems)
    import uvicorn

    from standins.mail.app import create_app, smtp_controller
    from standins.mail.store import Mailbox

    box = Mailbox(settings.keep_per_recipient)
    smtp = smtp_controller(settings, box, args.host)
    smtp.start()
    try:
        uvicorn.run(create_app(settings, box), host=args.host, port=args.port, access_log=False, log_level="info")
    finally:
        smtp.stop()


if __name__ == "__main__":
    main()

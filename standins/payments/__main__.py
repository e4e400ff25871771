"""`python -m standins.payments --host H --port P`: validate the settings, then serve."""

from __future__ import annotations

import argparse

from standins.config import check_secret, fail, load_settings
from standins.payments.settings import PaymentsStandinSettings

SERVICE = "payments-standin"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m standins.payments")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    settings = load_settings(PaymentsStandinSettings, SERVICE)
    problems: list[str] = []
    if not settings.is_local:
        check_secret(problems, "PAYMENTS_STANDIN_API_KEY", settings.secret("api_key"))
        check_secret(problems, "PAYMENTS_STANDIN_WEBHOOK_SECRET", settings.secret("webhook_secret"))
    if problems:
        fail(SERVICE, f"refusing to start in env={settings.env}", problems)
    import uvicorn

    from standins.payments.app import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, access_log=False, log_level="info")


if __name__ == "__main__":
    main()

"""`python -m standins.llm --host H --port P`: validate the settings, then serve.

A missing or invalid `LLM_STANDIN_*` variable exits 2 naming it (never its value).
"""

from __future__ import annotations

import argparse

from standins.config import check_secret, fail, load_settings
from standins.llm.settings import LlmStandinSettings

SERVICE = "llm-standin"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m standins.llm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    settings = load_settings(LlmStandinSettings, SERVICE)
    problems: list[str] = []
    if not settings.is_local:
        # Reachable from more than this machine: a guessable key would let anyone inject faults.
        check_secret(problems, "LLM_STANDIN_API_KEY", settings.secret("api_key"))
    if problems:
        fail(SERVICE, f"refusing to start in env={settings.env}", problems)
    import uvicorn

    from standins.llm.app import create_app

    # No access log: the request log (`/_standin/requests`) is where requests are read.
    uvicorn.run(create_app(settings), host=args.host, port=args.port, access_log=False, log_level="info")


if __name__ == "__main__":
    main()

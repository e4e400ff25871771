"""python -m workbook.stack up|down|status|logs|restart SVC|kill SVC|env"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from rich.console import Console
from rich.table import Table

from workbook.errors import WorkbookError
from workbook.stack.clickhouse import login_users
from workbook.stack.manager import Stack
from workbook.stack.redis import sentinel_primary
from workbook.stack.state import stack_secret

console = Console()


def print_status(stack: Stack) -> bool:
    table = Table("service", "state", "pid", "version")
    rows = stack.status()
    for r in rows:
        table.add_row(r.name, "[green]running[/]" if r.running else "[red]down[/]",
                      str(r.pid or ""), r.version)
    console.print(table)
    # Plain lines, never cut to the terminal's width: engineers copy these.
    for r in rows:
        if r.url:
            print(f"{r.name:<11} {r.url}")
    return all(r.running for r in rows)


# The services whose passwords the workbook uses (params/external.yaml names the same variables).
EXTERNAL_PASSWORDS = ("postgres", "redis", "clickhouse", "auth", "llm")


def external_env(stack: Stack) -> list[str]:
    """`WORKBOOK_EXTERNAL_<SERVICE>_URL` / `_PASSWORD`: the running stack as params/external.yaml
    reads it, for runs that must treat it as a stack they did not start."""
    lines = []
    # The platform's Redis is whichever data server Sentinel has made the primary (an external env
    # reaches it at a plain URL).
    primary = sentinel_primary(stack.paths)
    for name, svc in stack.state().services.items():
        var = f"WORKBOOK_EXTERNAL_{name.upper()}"
        url = svc.url
        if name == "redis" and primary is not None:
            url = f"redis://127.0.0.1:{primary}/{svc.database}"
        lines.append(f"export {var}_URL={shlex.quote(url)}")
        if name in EXTERNAL_PASSWORDS:
            lines.append(f"export {var}_PASSWORD={shlex.quote(stack_secret(stack.paths, name))}")
    if "clickhouse" in stack.state().services:  # the platform's logins to it (params/external.yaml)
        for login in login_users():
            lines.append(f"export WORKBOOK_EXTERNAL_{login.upper()}_PASSWORD="
                         f"{shlex.quote(stack_secret(stack.paths, login))}")
    return lines


def shell_env(stack: Stack) -> str:
    """Exports that let psql, redis-cli and curl reach the stack, and `--env external` treat it
    as a stack it did not start; prints passwords only on request."""
    state = stack.state()
    lines = []
    if pg := state.services.get("postgres"):
        lines.append(f"export DATABASE_URL={shlex.quote(pg.url)}")
        lines.append(f"export PGPASSWORD={shlex.quote(stack_secret(stack.paths, 'postgres'))}")
    if rd := state.services.get("redis"):
        lines.append(f"export REDIS_URL={shlex.quote(rd.url)}")
        lines.append(f"export REDISCLI_AUTH={shlex.quote(stack_secret(stack.paths, 'redis'))}")
    if ch := state.services.get("clickhouse"):
        lines.append(f"export CLICKHOUSE_URL={shlex.quote(ch.url)}")
        lines.append(f"export CLICKHOUSE_PASSWORD={shlex.quote(stack_secret(stack.paths, 'clickhouse'))}")
    return "\n".join(lines + external_env(stack))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbook.stack",
                                     description="The embedded local stack of real servers.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start every service (reuses running ones)")
    sub.add_parser("down", help="stop the services this stack started")
    sub.add_parser("status", help="show each service; exit 1 if any is down")
    logs = sub.add_parser("logs", help="last lines of a service's log")
    logs.add_argument("service")
    logs.add_argument("-n", "--lines", type=int, default=40)
    for name, text in (("restart", "stop and start one service on its port"),
                       ("kill", "SIGKILL one service, as a crash would")):
        sub.add_parser(name, help=text).add_argument("service")
    sub.add_parser("env", help="shell exports for psql/redis-cli/curl and --env external (includes passwords)")
    args = parser.parse_args(argv)

    stack = Stack()
    try:
        if args.command == "up":
            t0 = time.monotonic()
            started, reused = stack.up()
            console.print(f"stack up in {time.monotonic() - t0:.1f}s "
                          f"(started: {', '.join(started) or 'none'}; reused: {', '.join(reused) or 'none'})")
            print_status(stack)
            console.print("passwords: [bold]eval \"$(python -m workbook.stack env)\"[/], then "
                          "psql \"$DATABASE_URL\", redis-cli -u \"$REDIS_URL\", "
                          "curl -u \"default:$CLICKHOUSE_PASSWORD\" \"$CLICKHOUSE_URL/?query=SELECT+1\"")
        elif args.command == "down":
            stopped = stack.down()
            console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        elif args.command == "status":
            return 0 if print_status(stack) else 1
        elif args.command == "logs":
            print(stack.logs(args.service, args.lines))
        elif args.command == "restart":
            svc = stack.restart(args.service)
            console.print(f"{svc.name} restarted: pid {svc.pid}, {svc.url}")
        elif args.command == "kill":
            stack.kill(args.service)
            console.print(f"{args.service} killed (SIGKILL); `restart {args.service}` brings it back")
        elif args.command == "env":
            print(shell_env(stack))
    except WorkbookError as e:
        console.print(f"[red]error:[/] {e}", highlight=False)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

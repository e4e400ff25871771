"""ClickHouse: a `clickhouse` binary on PATH if there is one, else the ClickHouse stand-in
(`python -m standins.clickhouse`: chDB behind ClickHouse's HTTP interface).

Either way clients speak ClickHouse's HTTP protocol, so notebooks use clickhouse-connect
unchanged in every environment.

The platform logs in as two users besides `default` (its migrations): a writer for ingestion
and a reader for analytics and agent tools. A server gets them from the platform's migrations
(real users, grants and a `readonly` settings profile). The stand-in has no access control, so
the stack gives it a users file saying the same thing in the terms chDB can enforce: the reader's
profile (`readonly=1`, which the engine enforces) and the writer's statements (which the gateway
enforces, standins/clickhouse/users.py). The two logins are also endpoints of the env
(`clickhouse_writer`, `clickhouse_reader`), so checks can try what each may do.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import httpx

from workbook.stack.platform_config import expected
from workbook.stack.service import Launch, ServiceSpec
from workbook.stack.state import Paths, stack_secret, write_private

# The env's endpoints for the platform's two logins, each with its generated password.
LOGINS = ("clickhouse_writer", "clickhouse_reader")
# What the platform's migrations grant the writer on a server (app/common/clickhouse_schema.py).
WRITER_STATEMENTS = ["SELECT", "WITH", "INSERT", "DELETE", "ALTER UPDATE", "ALTER DELETE", "SET", "USE", "SHOW",
                     "DESCRIBE", "DESC", "EXISTS"]


# The reader's settings profile, as the platform's migrations create it on a server.
READER_PROFILE = {"do_not_merge_across_partitions_select_final": "1", "readonly": "1"}


def server_binary() -> str | None:
    """A real ClickHouse to run instead of the stand-in, if there is one."""
    return os.environ.get("WORKBOOK_CLICKHOUSE") or shutil.which("clickhouse")


def login_users() -> dict[str, str]:
    """The user name of each of the platform's logins (expect.clickhouse in local params)."""
    ch = expected().clickhouse
    return {"clickhouse_writer": ch.writer_user, "clickhouse_reader": ch.reader_user}


def users_file(paths: Paths) -> dict[str, dict[str, object]]:
    names = login_users()
    # readonly last: once it is set, the engine refuses to change any other setting.
    return {names["clickhouse_reader"]: {"password": stack_secret(paths, "clickhouse_reader"),
                                         "settings": READER_PROFILE},
            names["clickhouse_writer"]: {"password": stack_secret(paths, "clickhouse_writer"),
                                         "statements": WRITER_STATEMENTS}}

SERVER_CONFIG = """<clickhouse>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{port}</http_port>
  <path>{data}/</path>
  <tmp_path>{data}/tmp/</tmp_path>
  <user_files_path>{data}/user_files/</user_files_path>
  <backups><allowed_path>{data}/backups/</allowed_path></backups>
  <logger><level>warning</level><console>1</console></logger>
  <users>
    <default>
      <password_sha256_hex>{sha}</password_sha256_hex>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota>
      <access_management>1</access_management>
    </default>
  </users>
  <profiles><default/></profiles>
  <quotas><default/></quotas>
</clickhouse>
"""


class ClickHouse(ServiceSpec):
    name = "clickhouse"
    user = "default"
    database = "default"

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        data = paths.data(self.name)
        data.mkdir(parents=True, exist_ok=True)
        pwfile = data / "password"
        write_private(pwfile, password)
        binary = server_binary()
        if binary:
            import hashlib

            write_private(data / "config.xml", SERVER_CONFIG.format(
                port=port, data=data, sha=hashlib.sha256(password.encode()).hexdigest()))
            return Launch(argv=[binary, "server", f"--config-file={data / 'config.xml'}"])
        logins = data / "users.json"
        write_private(logins, json.dumps(users_file(paths)))
        return Launch(argv=[sys.executable, "-m", "standins.clickhouse", "--host", "127.0.0.1",
                            "--port", str(port), "--data-dir", str(data / "chdb"),
                            "--password-file", str(pwfile), "--users-file", str(logins),
                            "--backups-dir", str(data / "backups")])

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def probe(self, url: str, password: str, timeout: float) -> str:
        r = httpx.post(url, params={"query": "SELECT version()"}, auth=(self.user, password),
                       timeout=timeout)
        r.raise_for_status()
        return r.text.strip()

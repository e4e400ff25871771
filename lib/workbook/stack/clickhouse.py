"""ClickHouse: a `clickhouse` binary on PATH if there is one, else the ClickHouse stand-in
(`python -m standins.clickhouse`: chDB behind ClickHouse's HTTP interface).

Either way clients speak ClickHouse's HTTP protocol, so notebooks use clickhouse-connect
unchanged in every environment.
"""

from __future__ import annotations

import os
import shutil
import sys

import httpx

from workbook.stack.service import Launch, ServiceSpec
from workbook.stack.state import Paths, write_private

SERVER_CONFIG = """<clickhouse>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{port}</http_port>
  <path>{data}/</path>
  <tmp_path>{data}/tmp/</tmp_path>
  <user_files_path>{data}/user_files/</user_files_path>
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
        binary = os.environ.get("WORKBOOK_CLICKHOUSE") or shutil.which("clickhouse")
        if binary:
            import hashlib

            write_private(data / "config.xml", SERVER_CONFIG.format(
                port=port, data=data, sha=hashlib.sha256(password.encode()).hexdigest()))
            return Launch(argv=[binary, "server", f"--config-file={data / 'config.xml'}"])
        return Launch(argv=[sys.executable, "-m", "standins.clickhouse", "--host", "127.0.0.1",
                            "--port", str(port), "--data-dir", str(data / "chdb"),
                            "--password-file", str(pwfile)])

    def url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def probe(self, url: str, password: str, timeout: float) -> str:
        r = httpx.post(url, params={"query": "SELECT version()"}, auth=(self.user, password),
                       timeout=timeout)
        r.raise_for_status()
        return r.text.strip()

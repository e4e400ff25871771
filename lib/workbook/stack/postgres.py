"""PostgreSQL 16 from pgserver's bundled binaries (or a `postgres` on PATH)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import asyncpg
import psutil

from workbook.stack.service import Launch, ServiceSpec, find_binary
from workbook.stack.state import Paths, write_private

# A killed postmaster stays a zombie until its new parent reaps it; PostgreSQL will not start
# while the PID its lock file names exists, so a restart right after a kill waits this long for it.
REAPED_WAIT_S = 10.0
# A recovering copy of the cluster needs at least the primary's (start_copy).
MAX_CONNECTIONS = 200
# PostgreSQL will not run as root; when we are root it runs as this unprivileged user.
SYSTEM_USER = "workbook-pg"


def bin_dir() -> Path:
    """pgserver's bundled PostgreSQL 16 (WORKBOOK_POSTGRES_BIN names a `postgres` binary to use instead)."""
    return find_binary("postgres", "WORKBOOK_POSTGRES_BIN", "pgserver", "pginstall/bin/postgres").parent


def _as_root_user(data: Path, binaries: Path) -> str | None:
    if os.geteuid() != 0:
        return None
    import stat
    import warnings

    with warnings.catch_warnings():
        # pgserver.utils asks platformdirs for a runtime dir at import and warns when XDG_RUNTIME_DIR is unset.
        warnings.simplefilter("ignore")
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(data)
    ensure_prefix_permissions(binaries)
    ensure_folder_permissions(binaries, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(binaries.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    for path in (data, *data.rglob("*")):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return SYSTEM_USER


def _wait_killed_postmaster_reaped(data: Path) -> None:
    """A postmaster killed a moment ago (a fault check's crash) may still be a zombie: wait, bounded,
    until it is gone. A live process under that PID is left for PostgreSQL itself to judge."""
    try:
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + REAPED_WAIT_S
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)


class Postgres(ServiceSpec):
    name = "postgres"
    user = "postgres"
    database = "postgres"

    def prepare(self, paths: Paths, port: int, password: str) -> Launch:
        data = paths.data(self.name)
        binaries = bin_dir()
        # initdb bakes the password in: if the stack's secrets were deleted since, the old
        # cluster can never be logged into again, and its data is disposable test data.
        marker = paths.base / "postgres.pw.sha256"
        digest = hashlib.sha256(password.encode()).hexdigest()
        if data.exists() and (not marker.is_file() or marker.read_text() != digest):
            shutil.rmtree(data)
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)
        _wait_killed_postmaster_reaped(data)
        archive = paths.wal_archive
        archive.mkdir(parents=True, exist_ok=True)
        archive.chmod(0o700)
        run_as = _as_root_user(data, binaries)
        if run_as:
            shutil.chown(archive, run_as)
        if not (data / "PG_VERSION").exists():
            pwfile = paths.base / "pg.pw"
            write_private(pwfile, password)
            if run_as:
                shutil.chown(pwfile, run_as)
            try:
                subprocess.run(
                    [str(binaries / "initdb"), "-D", str(data), "-U", self.user, "--pwfile", str(pwfile),
                     "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8",
                     "--no-sync", "--no-instructions"],
                    check=True, capture_output=True, text=True, user=run_as, timeout=120,
                )
            except subprocess.CalledProcessError as e:
                raise RuntimeError(f"initdb failed: {e.stderr.strip().splitlines()[-1:]}") from None
            finally:
                pwfile.unlink(missing_ok=True)
            marker.write_text(digest)
        argv = [
            str(binaries / "postgres"), "-D", str(data), "-p", str(port),
            "-c", "listen_addresses=127.0.0.1",
            # The socket dir must be short (108-byte limit) and writable by the server's user.
            "-c", f"unix_socket_directories={data}",
            "-c", f"max_connections={MAX_CONNECTIONS}",
            "-c", "logging_collector=off",
            # Every agent step is its own commit: without a flush to disk per commit (3-4 ms on a
            # busy disk here, 0.5 ms without) a run of 26 steps is ~80 ms shorter. A killed server
            # loses nothing (its writes are in the OS's cache); only a machine crash could, and the
            # embedded stack's data is throwaway.
            "-c", "fsync=off",
            # Every completed WAL segment is copied to the archive: with a base backup
            # (pg_basebackup) it recovers the cluster to any moment since (point-in-time recovery,
            # 04_database's backup checks). The checks that use it remove what they no longer need.
            "-c", "archive_mode=on",
            "-c", f"archive_command=test ! -f {archive}/%f && cp %p {archive}/%f",
        ]
        return Launch(argv=argv, user=run_as)

    def url(self, port: int) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{port}/{self.database}"

    def probe(self, url: str, password: str, timeout: float) -> str:
        async def ask() -> str:
            conn = await asyncpg.connect(url, password=password, timeout=timeout)
            try:
                return str(await conn.fetchval("SHOW server_version"))
            finally:
                await conn.close()

        return asyncio.run(ask())


def ensure_database(url: str, password: str, name: str) -> None:
    """Create database `name` on the stack's PostgreSQL unless it exists (a platform service's own)."""

    async def run() -> None:
        conn = await asyncpg.connect(url, password=password, timeout=10)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                try:
                    await conn.execute(f'CREATE DATABASE "{name}"')
                except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                    pass  # another instance of the same service created it a moment ago
        finally:
            await conn.close()

    asyncio.run(run())


def start_copy(data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start a PostgreSQL on a copy of the stack's cluster (a restored base backup) at
    127.0.0.1:`port`, as the stack's server runs, archiving nothing. The caller stops it."""
    binaries = bin_dir()
    data.chmod(0o700)
    run_as = _as_root_user(data, binaries)
    argv = [str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={data}", "-c", "archive_mode=off", "-c", "fsync=off",
            "-c", f"max_connections={MAX_CONNECTIONS}",
            "-c", "logging_collector=off"]
    with log.open("ab") as out:
        return subprocess.Popen(argv, user=run_as, stdout=out, stderr=subprocess.STDOUT)

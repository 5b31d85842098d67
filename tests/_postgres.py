"""A real PostgreSQL server for the storage tests, started and stopped by the test itself.

The server is Debian's ``postgresql`` package (installed with apt-get when it is absent and the
tests run as root), run as an unprivileged user in a temporary data directory, listening on
127.0.0.1 only, with its Unix socket in that directory too (so it never touches
``/var/run/postgresql`` and never collides with a system cluster). ``PostgresServer.stop`` shuts
it down fast and removes nothing else.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Debian installs one folder per major version; the newest wins.
_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    found = [Path(p) for p in glob.glob(_BIN_GLOB) if (Path(p) / "initdb").is_file()]
    if not found:
        for name in ("initdb", "pg_ctl"):
            exe = shutil.which(name)
            if exe is None:
                return None
        return Path(shutil.which("initdb") or "").resolve().parent
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def install_with_apt() -> str | None:
    """Install Debian's ``postgresql`` package. Returns why it could not, or None on success."""
    if os.geteuid() != 0:
        return "PostgreSQL is not installed and the tests do not run as root (apt-get install postgresql)"
    if shutil.which("apt-get") is None:
        return "PostgreSQL is not installed and this machine has no apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
    ):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
            return f"`{' '.join(cmd)}` failed: {tail[0]}"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unprivileged_user() -> str | None:
    """initdb refuses to run as root: as root, run the server as ``postgres`` (created by the
    Debian package) or ``nobody``; otherwise as ourselves (None)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


@dataclass
class PostgresServer:
    bin_dir: Path
    data_dir: Path
    port: int
    user: str | None
    log: Path

    def run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        # the server must not inherit a cwd it cannot read (root's home) as the postgres user
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=str(self.data_dir.parent)
        )

    def url(self, database: str) -> str:
        return f"postgresql://neuronas@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        r = self.run(["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "neuronas", name])
        if r.returncode != 0:
            raise RuntimeError(f"createdb {name} failed: {r.stderr.strip()}")
        return self.url(name)

    def stop(self) -> None:
        self.run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])


@contextlib.contextmanager
def postgres_server(bin_dir: Path) -> Iterator[PostgresServer]:
    """Start a throw-away server; yield it; stop it and remove its data directory."""
    user = _unprivileged_user()
    top = Path(tempfile.mkdtemp(prefix="neuronas-pg-"))
    top.chmod(0o755)
    data = top / "data"
    data.mkdir()
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(top, pw.pw_uid, pw.pw_gid)
        os.chown(data, pw.pw_uid, pw.pw_gid)
    server = PostgresServer(bin_dir, data, _free_port(), user, top / "server.log")
    try:
        r = server.run(
            ["initdb", "-D", str(data), "-U", "neuronas", "--auth=trust", "-E", "UTF8", "--no-sync"]
        )
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed: {r.stderr.strip() or r.stdout.strip()}")
        opts = f"-h 127.0.0.1 -p {server.port} -k {top} -c fsync=off -c max_connections=50"
        r = server.run(
            [
                "pg_ctl",
                "-D",
                str(data),
                "-l",
                str(server.log),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        if r.returncode != 0:
            log = server.log.read_text() if server.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()} {log[-500:]}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", server.port), timeout=1),
            ):
                break
            time.sleep(0.2)
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(top, ignore_errors=True)

"""A throw-away PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl start`` on a free loopback port, data and unix
socket in a temporary folder, torn down afterwards.

The server refuses to run as root, so as root the cluster belongs to the ``postgres`` user (created by Debian's
``postgresql`` package), or ``nobody`` where that user is absent, and the commands run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.common.conftest import free_port


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: PATH first, then Debian's /usr/lib/postgresql/<v>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def _server_user() -> str | None:
    """None: run as the current (non-root) user; else the user to ``runuser`` the server commands as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError(
        "running as root and neither a 'postgres' nor a 'nobody' user exists for the test server"
    )


def _run(cmd: list[str], user: str | None, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a server command (as ``user``) from ``cwd``, a folder that user can enter (initdb needs one)."""
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


@contextmanager
def postgres_server(bin_dir: Path, database: str = "optuna") -> Iterator[str]:
    """Start a cluster, create ``database`` and yield a SQLAlchemy URL for it; stop and delete it afterwards."""
    user = _server_user()
    root = Path(
        tempfile.mkdtemp(prefix="pgtest-")
    )  # not pytest's tmp_path: root-only, unreadable to postgres
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (root, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = free_port()
    started = False
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
              "--no-sync"], user, root)  # fmt: skip
        options = f"-h 127.0.0.1 -p {port} -k {sock} -F -c fsync=off -c max_connections=50"
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "server.log"),
              "-w", "-t", "60", "start"], user, root)  # fmt: skip
        started = True
        _create_database(port, database)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{database}"
    finally:
        if started:
            try:
                _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user, root)
            except RuntimeError:
                pass
        shutil.rmtree(root, ignore_errors=True)


def _create_database(port: int, database: str) -> None:
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    conn.close()

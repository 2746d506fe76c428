"""Inter-process locks on run folders (``filelock``: an OS file lock, released by the kernel when its process dies,
so a ``kill -9`` never leaves a lock that blocks the next run).

Beside each lock file, its holder writes who it is (pid, host, since, what it does), so the process that finds the
lock taken can say which process holds it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from common.atomic import write_json
from common.errors import UserError


class Lock:
    """``with Lock(path, "training fold 3"):`` — or :meth:`acquire` / :meth:`release`."""

    def __init__(self, path: str | Path, what: str, timeout: float = 0.0) -> None:
        self.path = Path(path)
        self.owner_path = self.path.with_name(self.path.name + ".owner")
        self.what = what
        self.timeout = timeout
        self._lock = FileLock(str(self.path))

    def holder(self) -> str:
        """Who holds it, as far as its owner file says."""
        try:
            owner = json.loads(self.owner_path.read_text(encoding="utf-8"))
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
            return f"pid {owner.get('pid')} on host {owner.get('host')} since {since} ({owner.get('what')})"
        except (OSError, ValueError):
            return "another process (no owner record)"

    def acquire(self, timeout: float | None = None) -> Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=self.timeout if timeout is None else timeout)
        except Timeout:
            raise UserError(
                f"cannot {self.what}: locked by {self.holder()}; wait for it to finish or choose another --run-dir"
            ) from None
        write_json(
            self.owner_path,
            {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "what": self.what},
        )
        return self

    def release(self) -> None:
        if self._lock.is_locked:
            self.owner_path.unlink(missing_ok=True)
            self._lock.release(force=True)

    @property
    def is_locked(self) -> bool:
        return self._lock.is_locked

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_held(path: str | Path) -> bool:
    """Whether another process holds the lock at ``path`` right now (tries it without waiting)."""
    probe = FileLock(str(path))
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    probe.release(force=True)
    return False

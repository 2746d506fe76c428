"""Content fingerprints of the files and folders a run reads, so a run folder knows what data it was made from.

A file's fingerprint is its size and a BLAKE2b hash of its bytes; a folder's covers every file below it (relative
name, size and hash; hidden entries such as ``.cache/`` are skipped). Hashing is cached per file in a small SQLite
database keyed by the file's path, size, modification time, change time and inode, so an unchanged file is never
read twice and any write to it (``ctime`` changes even when ``mtime`` is restored) is seen. The cache lives in
``$TB_CACHE_DIR`` (default ``~/.cache/tianchi-baselines``); without a writable cache the hashes are computed anew.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CACHE_ENV = "TB_CACHE_DIR"
_CHUNK = 8 << 20


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tianchi-baselines")


def _stat_key(path: Path, st: os.stat_result) -> str:
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"


def _hash_file(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _Cache:
    """``stat key -> digest`` in SQLite (safe for several processes); silently absent when it cannot be opened."""

    def __init__(self) -> None:
        self.db: sqlite3.Connection | None = None
        try:
            folder = cache_dir()
            folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(folder / "fingerprints.sqlite", timeout=60)
            self.db.execute("CREATE TABLE IF NOT EXISTS digests (key TEXT PRIMARY KEY, digest TEXT NOT NULL)")
        except (OSError, sqlite3.Error):
            self.db = None

    def get_many(self, keys: list[str]) -> dict[str, str]:
        if self.db is None or not keys:
            return {}
        out: dict[str, str] = {}
        try:
            for begin in range(0, len(keys), 500):
                part = keys[begin : begin + 500]
                marks = ",".join("?" * len(part))
                out.update(self.db.execute(f"SELECT key, digest FROM digests WHERE key IN ({marks})", part))
        except sqlite3.Error:
            return out
        return out

    def put_many(self, items: Mapping[str, str]) -> None:
        if self.db is None or not items:
            return
        with contextlib.suppress(sqlite3.Error):
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?)", list(items.items()))

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def file_digests(paths: Iterable[str | os.PathLike], workers: int = 8) -> list[str]:
    """The content hash of each file (cached; uncached ones hashed in parallel threads)."""
    paths = [Path(p) for p in paths]
    keys = [_stat_key(p, p.stat()) for p in paths]
    cache = _Cache()
    try:
        known = cache.get_many(keys)
        todo = [i for i, k in enumerate(keys) if k not in known]
        if todo:
            with ThreadPoolExecutor(max(1, min(workers, len(todo)))) as pool:
                fresh = dict(
                    zip((keys[i] for i in todo), pool.map(_hash_file, (paths[i] for i in todo)), strict=True)
                )
            cache.put_many(fresh)
            known.update(fresh)
    finally:
        cache.close()
    return [known[k] for k in keys]


def _files_below(folder: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return out


def fingerprint(path: str | os.PathLike) -> dict:
    """``{"kind", "bytes", "digest"}`` (plus ``"files"`` for a folder) of a file or folder."""
    path = Path(path)
    if path.is_dir():
        files = _files_below(path)
        digests = file_digests(files)
        h = hashlib.blake2b(digest_size=16)
        total = 0
        for f, d in zip(files, digests, strict=True):
            size = f.stat().st_size
            total += size
            h.update(f"{f.relative_to(path).as_posix()}\0{size}\0{d}\n".encode())
        return {"kind": "folder", "files": len(files), "bytes": total, "digest": h.hexdigest()}
    (digest,) = file_digests([path])
    return {"kind": "file", "bytes": path.stat().st_size, "digest": digest}


def fingerprints(paths: Iterable[str | os.PathLike]) -> dict[str, dict]:
    """``{path as given: fingerprint}`` for each existing path."""
    return {str(p): fingerprint(p) for p in paths if Path(p).exists()}


def changed(old: Mapping[str, dict], new: Mapping[str, dict]) -> list[str]:
    """Paths whose content differs, or that appeared or disappeared, between two ``fingerprints`` results (a
    path's name may differ when the data folder moved: entries are compared by file name when paths differ)."""
    by_name_old = {Path(k).name: v for k, v in old.items()}
    by_name_new = {Path(k).name: v for k, v in new.items()}
    names = sorted(set(by_name_old) | set(by_name_new))
    return [n for n in names if by_name_old.get(n, {}).get("digest") != by_name_new.get(n, {}).get("digest")]

"""The submission ledger: which submission files this repository wrote, and what public score each one got.

Per competition, two append-only CSV files under ``submissions/<comp>/``:

- ``index.csv``: one row per submission file written (``train``'s run submission and its archived copy, a blend's,
  ``submission-full.csv``, ``predict --out``): time, kind, file, content hash, run, model, CV, metric. Written only
  by :meth:`Ledger.record_written`, which :func:`common.submission.write_frame` calls right after the file is in
  place: every submission the repository writes goes through it.
- ``scores.csv``: one row per upload whose public score you recorded (``lb-score``): time, file, hash, run, model,
  kind, CV, metric, board, score. A file is recognised by its content (BLAKE2b of its bytes), so a renamed or copied
  submission still is; a file the repository did not write (no row of ``index.csv`` has its hash) is refused.

Rows are appended under a lock (two processes never interleave a line) and fsynced; nothing is ever rewritten.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common.errors import UserError
from common.fingerprint import file_digests
from common.locks import Lock

INDEX, SCORES, LOCK = "index.csv", "scores.csv", ".ledger.lock"
INDEX_COLUMNS = ["time", "kind", "file", "hash", "run", "model", "cv", "metric"]
SCORE_COLUMNS = ["time", "file", "hash", "run", "model", "kind", "cv", "metric", "board", "score"]
BOARDS = ("a", "b")
KINDS = ("train", "blend", "full", "predict")


def content_hash(path: str | os.PathLike) -> str:
    """BLAKE2b (16 bytes, hex) of the file's bytes: the same digest the runs' data fingerprints use."""
    return file_digests([path])[0]


def run_key(run: str | os.PathLike) -> str:
    """A run directory as an absolute, normalised path (relative paths are taken from the working directory, as
    they were when recorded): what the leaderboard matches ledger rows to runs by."""
    return os.path.normpath(os.path.abspath(run)) if str(run) else ""


@dataclass(frozen=True)
class Origin:
    """Where a submission file comes from; recorded with its content hash when the file is written."""

    root: str | os.PathLike  # the submissions root (``submissions``)
    competition: str
    kind: str  # train | blend | full | predict
    run: str
    model: str
    cv: float | None = None
    metric: str | None = None


def _float_text(value) -> str:
    if value is None:
        return ""
    value = float(value)
    return "" if math.isnan(value) else repr(value)


class Ledger:
    """``submissions/<competition>/{index,scores}.csv`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, competition: str) -> None:
        self.root = Path(root)
        self.competition = competition
        self.folder = self.root / competition

    @property
    def index_path(self) -> Path:
        return self.folder / INDEX

    @property
    def scores_path(self) -> Path:
        return self.folder / SCORES

    # ------------------------------------------------------------------ writing
    def _append(self, path: Path, columns: list[str], row: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with Lock(self.folder / LOCK, f"append to {path}", timeout=60.0):
            new = not path.is_file() or path.stat().st_size == 0
            with open(path, "a", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                if new:
                    writer.writerow(columns)
                writer.writerow([row.get(c, "") for c in columns])
                fh.flush()
                os.fsync(fh.fileno())

    def record_written(self, path: str | os.PathLike, origin: Origin) -> dict:
        """Append the row of a submission file just written (the one writer of ``index.csv``)."""
        if origin.kind not in KINDS:
            raise ValueError(f"kind {origin.kind!r}; expected one of {KINDS}")
        row = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "kind": origin.kind,
            "file": str(path),
            "hash": content_hash(path),
            "run": str(origin.run),
            "model": origin.model,
            "cv": _float_text(origin.cv),
            "metric": origin.metric or "",
        }
        self._append(self.index_path, INDEX_COLUMNS, row)
        return row

    def record_score(self, sub: str | os.PathLike, score: float, board: str = "a") -> dict:
        """Append the public ``score`` that submission file ``sub`` got on leaderboard ``board``. Refuses a file
        this repository did not write, naming the competition whose index has it when that is another one."""
        sub = Path(sub)
        if not sub.is_file():
            raise UserError(f"--sub {sub}: file not found")
        if board not in BOARDS:
            raise UserError(f"--board {board!r}: expected one of {', '.join(BOARDS)}")
        if not math.isfinite(score):
            raise UserError(f"--score {score!r}: expected a finite number (the public leaderboard score)")
        digest = content_hash(sub)
        written = self.find(digest, sub)
        if written is None:
            elsewhere = [
                folder.name
                for folder in sorted(self.root.glob("*/"))
                if folder.name != self.competition and Ledger(self.root, folder.name).find(digest) is not None
            ]
            if elsewhere:
                raise UserError(
                    f"{sub} is a submission of {elsewhere[0]}, not {self.competition} (COMP={elsewhere[0]})"
                )
            raise UserError(
                f"{sub} was not written by this repository (its content hash {digest} is in no row of "
                f"{self.index_path}); record scores of the files train, blend, full or predict wrote"
            )
        row = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "file": str(sub),
            "hash": digest,
            **{k: written[k] for k in ("run", "model", "kind", "metric")},
            "cv": _float_text(written["cv"]),
            "board": board,
            "score": repr(float(score)),
        }
        self._append(self.scores_path, SCORE_COLUMNS, row)
        return row

    # ------------------------------------------------------------------ reading
    def _read(self, path: Path, columns: list[str]) -> pd.DataFrame:
        if not path.is_file():
            return pd.DataFrame(columns=columns)
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not a readable ledger CSV ({str(exc).splitlines()[0]})") from None
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise UserError(f"{path}: missing column(s) {missing}; expected {','.join(columns)}")
        for column in ("cv", "score"):
            if column in frame:
                frame[column] = pd.to_numeric(frame[column], errors="coerce")
        return frame[columns]

    def written(self) -> pd.DataFrame:
        """Every row of ``index.csv`` (oldest first; ``cv`` as float, NaN where the run had none)."""
        return self._read(self.index_path, INDEX_COLUMNS)

    def scores(self) -> pd.DataFrame:
        """Every recorded upload (oldest first; ``cv`` and ``score`` as floats)."""
        return self._read(self.scores_path, SCORE_COLUMNS)

    def find(self, digest: str, path: str | os.PathLike | None = None) -> dict | None:
        """The latest ``index.csv`` row of a file with this content hash, or None. With ``path``, the row of that
        very file when one has the hash: two runs often write byte-identical label files (a run and its pseudo
        run, k-fold and full), and the file the user names says which run it was."""
        frame = self.written()
        match = frame[frame["hash"] == digest]
        if path is not None and not match.empty:
            same = match[[run_key(f) == run_key(path) for f in match["file"]]]
            if not same.empty:
                return same.iloc[-1].to_dict()
        return None if match.empty else match.iloc[-1].to_dict()

    def latest_score_by_run(self) -> dict[str, dict]:
        """``run_key(run) -> the latest scores.csv row of that run`` (any board; the row says which)."""
        out: dict[str, dict] = {}
        for row in self.scores().to_dict("records"):
            out[run_key(row["run"])] = row  # rows are in time order: the last one wins
        return out

    def latest_written_by_run(self, kinds: tuple[str, ...] = ("train", "blend")) -> dict[str, dict]:
        """``run_key(run) -> the latest index.csv row of that run`` among ``kinds``, preferring files under the
        submissions root (the archived copies) over the run folder's own ``submission.csv``."""
        out: dict[str, dict] = {}
        root = run_key(self.root)
        for row in self.written().to_dict("records"):
            if row["kind"] not in kinds:
                continue
            key = run_key(row["run"])
            archived = run_key(row["file"]).startswith(root + os.sep)
            previous = out.get(key)
            if previous is None or archived or not previous["_archived"]:
                out[key] = {**row, "_archived": archived}
        return out

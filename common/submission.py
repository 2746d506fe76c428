"""Submissions: checked against the contest's format, written atomically, never overwritten silently, and recorded
with their content hash in the submission ledger (:mod:`common.ledger`) when their origin is given."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from common.atomic import atomic_path
from common.competition import Competition, TestData
from common.errors import UserError
from common.ledger import Ledger, Origin


def write_submission(
    competition: Competition,
    test: TestData,
    proba,
    path: str | Path,
    *,
    overwrite: bool = False,
    origin: Origin | None = None,
) -> Path:
    """Build, check and atomically write a submission CSV for ``test`` from probabilities."""
    frame = competition.submission_frame(test, proba)
    return write_frame(competition, test, frame, path, overwrite=overwrite, origin=origin)


def write_frame(
    competition: Competition,
    test: TestData,
    frame: pd.DataFrame,
    path: str | Path,
    *,
    overwrite: bool = False,
    origin: Origin | None = None,
) -> Path:
    """Check and atomically write ``frame``; with ``origin``, append its row (content hash, run, CV) to
    ``<origin.root>/<competition>/index.csv``, so ``lb-score`` knows the file."""
    competition.check_submission(frame, test)
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; refusing to overwrite it (pass --force or choose another --out)")
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    if origin is not None:
        Ledger(origin.root, origin.competition).record_written(path, origin)
    return path


def archive_name(competition: str, model: str, score: float, root: str | Path = "submissions") -> Path:
    """``submissions/<comp>/<model>-cv<score>-<timestamp>.csv`` (``-2``, ``-3``... appended when a submission of
    the same model and score was archived within the same second, e.g. a merge re-run)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = Path(root) / competition / f"{model}-cv{score:.5f}-{stamp}"
    path, n = stem.with_name(stem.name + ".csv"), 1
    while path.exists():
        n += 1
        path = stem.with_name(f"{stem.name}-{n}.csv")
    return path

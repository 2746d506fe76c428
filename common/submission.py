"""Submissions: checked against the contest's format, written atomically, never overwritten silently."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from common.atomic import atomic_path
from common.competition import Competition, TestData
from common.errors import UserError


def write_submission(
    competition: Competition, test: TestData, proba, path: str | Path, *, overwrite: bool = False
) -> Path:
    """Build, check and atomically write a submission CSV for ``test`` from probabilities."""
    frame = competition.submission_frame(test, proba)
    return write_frame(competition, test, frame, path, overwrite=overwrite)


def write_frame(
    competition: Competition,
    test: TestData,
    frame: pd.DataFrame,
    path: str | Path,
    *,
    overwrite: bool = False,
) -> Path:
    competition.check_submission(frame, test)
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; refusing to overwrite it (pass --force or choose another --out)")
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
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

"""Folds are data: a CSV with ``id``, ``label`` and ``fold`` columns, made once per (dataset, n_folds, seed) and
reused by every model so out-of-fold predictions from different models line up for blending.

The label column (the stratification key) is stored so that a folds file made from other data is detected. Rows
that share a group (exact duplicates of each other) always land in the same fold: a duplicate in the validation
fold of a row it was trained on would inflate the CV score.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold

from common.atomic import atomic_path
from common.errors import UserError


def make_folds(ids, strata, n_folds: int = 5, seed: int = 42, groups=None) -> pd.DataFrame:
    """Assign each row a fold with sklearn's StratifiedKFold on ``strata`` (plain KFold where a stratum is too
    small to split). With ``groups``, each group's first row is split and its other rows follow it into the same
    fold. Returns a frame with ``id``, ``label`` (the strata, as strings) and ``fold``."""
    ids = np.asarray(ids)
    strata = np.asarray(strata).astype(str)
    if len(ids) != len(strata):
        raise ValueError(f"{len(ids)} ids but {len(strata)} strata")
    if n_folds < 2:
        raise UserError(f"n_folds must be at least 2, got {n_folds}")
    if groups is None:
        first, inverse = np.arange(len(ids)), np.arange(len(ids))
    else:
        _, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    if len(first) < n_folds:
        raise UserError(f"cannot make {n_folds} folds from {len(first)} distinct rows")
    rep_strata = strata[first]
    rep_fold = np.full(len(first), -1, dtype=np.int64)
    _, counts = np.unique(rep_strata, return_counts=True)
    if counts.min() >= n_folds:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(first)), rep_strata)
    else:
        splitter = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(first)))
    for k, (_, valid_idx) in enumerate(splits):
        rep_fold[valid_idx] = k
    return pd.DataFrame({"id": ids.astype(str), "label": strata, "fold": rep_fold[np.ravel(inverse)]})


def data_fingerprint(ids, strata, groups=None) -> str:
    """A short hash of the ids, strata (and groups), naming the folds file so other data never reuses it."""
    h = hashlib.sha1()
    parts = [np.asarray(ids).astype(str), np.asarray(strata).astype(str)]
    if groups is not None:
        parts.append(np.asarray(groups).astype(str))
    for part in parts:
        h.update("\x1f".join(part.tolist()).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:10]


def folds_path(folds_dir: str | os.PathLike, ids, strata, n_folds: int, seed: int, groups=None) -> Path:
    return Path(folds_dir) / f"folds-k{n_folds}-s{seed}-{data_fingerprint(ids, strata, groups)}.csv"


def load_folds(path: str | os.PathLike, ids, strata, n_folds: int | None = None) -> np.ndarray:
    """Read a folds file and check it matches ``ids``/``strata`` row by row; return the fold column."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"folds file not found: {path}")
    try:
        df = pd.read_csv(path, dtype={"id": str, "label": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{path}: not a readable folds CSV ({exc})") from None
    missing = {"id", "label", "fold"} - set(df.columns)
    if missing:
        raise UserError(f"{path}: missing column(s) {sorted(missing)}; expected id,label,fold")
    ids = np.asarray(ids).astype(str)
    strata = np.asarray(strata).astype(str)
    if len(df) != len(ids):
        raise UserError(
            f"{path}: folds file has {len(df)} rows but the data has {len(ids)}; it was made from other data"
        )
    bad = np.flatnonzero((df["id"].to_numpy() != ids) | (df["label"].to_numpy() != strata))
    if len(bad):
        raise UserError(
            f"{path}: row {bad[0] + 2} is id={df['id'].iat[bad[0]]!r} label={df['label'].iat[bad[0]]!r} but the data "
            f"has id={ids[bad[0]]!r} label={strata[bad[0]]!r}; the folds file was made from other data"
        )
    fold = df["fold"].to_numpy()
    if n_folds is not None and (fold.min() < 0 or fold.max() >= n_folds or len(np.unique(fold)) != n_folds):
        raise UserError(f"{path}: expected folds 0..{n_folds - 1}, found {sorted(np.unique(fold).tolist())}")
    return fold.astype(np.int64)


def get_folds(
    folds_dir: str | os.PathLike, ids, strata, n_folds: int = 5, seed: int = 42, groups=None
) -> tuple[np.ndarray, Path]:
    """Load the folds for this data, or create and save them the first time. Returns (fold column, path)."""
    path = folds_path(folds_dir, ids, strata, n_folds, seed, groups)
    if not path.exists():
        df = make_folds(ids, strata, n_folds, seed, groups)
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
    return load_folds(path, ids, strata, n_folds), path

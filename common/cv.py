"""Cross-validation for any registered model: one fold is the unit of work.

Each fold clones the model (sklearn's ``clone``), fits it on the training rows only (the validation fold's labels
never reach the model), and writes ``<run>/fold<k>/``: ``model.pkl``, ``oof.npy`` + ``oof_ids.npy`` (validation
probabilities), ``test.npy`` and, last, ``metrics.json``, the completion marker. A complete fold is skipped unless
``force``; so folds can run separately, in parallel (``make -j``) and resume. :func:`merge` assembles the OOF,
computes the CV score and averages the test probabilities.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import joblib
import numpy as np
from sklearn.base import clone

from common import distributed
from common.atomic import atomic_path, write_json, write_npy
from common.competition import TestData, TrainData
from common.errors import UserError

ScoreFn = Callable[[np.ndarray, np.ndarray], float]


def take(X, idx: np.ndarray):
    """Rows ``idx`` of ``X``: numpy arrays, DataFrames (by position), lists, or any object indexable by arrays."""
    idx = np.asarray(idx)
    if hasattr(X, "iloc"):
        return X.iloc[idx].reset_index(drop=True)
    if isinstance(X, list | tuple):
        return [X[i] for i in idx]
    return X[idx]


def fold_dir(run_dir: str | Path, fold: int) -> Path:
    return Path(run_dir) / f"fold{fold}"


def is_fold_complete(run_dir: str | Path, fold: int) -> bool:
    return (fold_dir(run_dir, fold) / "metrics.json").is_file()


def fold_numbers(folds: np.ndarray) -> list[int]:
    """The folds that have validation rows (a predefined split may mark train-only rows with -1)."""
    return sorted(int(k) for k in np.unique(folds) if k >= 0)


def class_list(y: np.ndarray) -> list | None:
    """The sorted classes of single-label targets (JSON-friendly), or None for structured targets."""
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iub":
        return None
    return [int(c) for c in np.unique(y)]


def align_columns(estimator, proba: np.ndarray, classes: Sequence | None) -> np.ndarray:
    """Put a fold model's probability columns (ordered by its own ``classes_``) into the columns of the full class
    list: a class absent from a fold's training rows gets probability 0 instead of shifting every later column."""
    own = getattr(estimator, "classes_", None)
    if classes is None or own is None or proba.ndim != 2 or proba.shape[1] != len(own):
        return proba
    classes = np.asarray(classes)
    own = np.asarray(own)
    if len(own) == len(classes) and np.array_equal(own, classes):
        return proba
    where = np.searchsorted(classes, own)
    if np.any(where >= len(classes)) or not np.array_equal(classes[np.minimum(where, len(classes) - 1)], own):
        raise UserError(
            f"the model predicts classes {own.tolist()} that are not in the data's {classes.tolist()}"
        )
    out = np.zeros((len(proba), len(classes)), dtype=proba.dtype)
    out[:, where] = proba
    return out


def _fit_kwargs(model, work_dir: Path, callbacks: Sequence) -> dict:
    params = inspect.signature(model.fit).parameters
    kwargs = {}
    if "work_dir" in params:
        kwargs["work_dir"] = work_dir
    if "callbacks" in params:
        kwargs["callbacks"] = list(callbacks)
    return kwargs


def _previous(out: Path, force: bool) -> dict | None:
    """The metrics of a complete fold (or refit) in ``out``, to skip it; with ``force`` its traces are removed."""
    if (out / "metrics.json").is_file() and not force:
        return {**json.loads((out / "metrics.json").read_text()), "skipped": True}
    names = ("metrics.json", "last.pt", "best.pt", "log.jsonl") if force else ("metrics.json",)
    for name in names:
        (out / name).unlink(missing_ok=True)
    return None


def _fit_clone(model, X, y, out: Path, callbacks: Sequence):
    out.mkdir(parents=True, exist_ok=True)
    estimator = clone(model)
    estimator.fit(X, y, **_fit_kwargs(estimator, out, callbacks))
    return estimator


def _proba(estimator, X, classes: list | None) -> np.ndarray:
    """float32 probabilities with columns in the order of the data's full class list."""
    return align_columns(estimator, np.asarray(estimator.predict_proba(X), dtype=np.float32), classes)


def _save(out: Path, estimator, arrays: dict[str, np.ndarray], metrics: dict) -> None:
    """Rank 0 writes the model and arrays, then ``metrics.json`` last: the completion marker."""
    if not distributed.is_main_process():
        return
    with atomic_path(out / "model.pkl") as tmp:
        joblib.dump(estimator, tmp)
    for name, array in arrays.items():
        write_npy(out / name, array)
    write_json(out / "metrics.json", metrics)
    (out / "last.pt").unlink(missing_ok=True)  # resume state is moot once the fold is complete


def run_fold(
    model,
    data: TrainData,
    folds: np.ndarray,
    fold: int,
    run_dir: str | Path,
    score_fn: ScoreFn,
    test: TestData | None = None,
    *,
    metric_name: str = "score",
    force: bool = False,
    callbacks: Sequence = (),
) -> dict:
    """Fit a clone of ``model`` on every row whose fold is not ``fold`` and predict that fold (and the test)."""
    out = fold_dir(run_dir, fold)
    if (previous := _previous(out, force)) is not None:
        return previous
    valid_mask = folds == fold
    if not valid_mask.any():
        raise UserError(f"fold {fold} has no rows; folds are {fold_numbers(folds)}")
    train_idx, valid_idx = np.flatnonzero(~valid_mask), np.flatnonzero(valid_mask)
    started = time.perf_counter()
    estimator = _fit_clone(model, take(data.X, train_idx), data.y[train_idx], out, callbacks)
    classes = class_list(data.y)
    arrays = {
        "oof.npy": _proba(estimator, take(data.X, valid_idx), classes),
        "oof_ids.npy": np.asarray(data.ids).astype(str)[valid_idx],
    }
    if test is not None:
        arrays["test.npy"] = _proba(estimator, test.X, classes)
    metrics = {
        "fold": int(fold),
        "score": float(score_fn(data.y[valid_idx], arrays["oof.npy"])),
        "metric": metric_name,
        "seconds": round(time.perf_counter() - started, 3),
        "n_train": int(len(train_idx)),
        "n_valid": int(len(valid_idx)),
    }
    _save(out, estimator, arrays, metrics)
    return metrics


def run_folds(
    model,
    data: TrainData,
    folds: np.ndarray,
    run_dir: str | Path,
    score_fn: ScoreFn,
    which: Iterable[int] | None = None,
    test: TestData | None = None,
    *,
    metric_name: str = "score",
    force: bool = False,
    callbacks_for: Callable[[int], Sequence] | None = None,
    on_fold_end: Callable[[int, dict], None] | None = None,
) -> list[dict]:
    """Run the folds in ``which`` (default all); complete folds are skipped unless ``force``."""
    results = []
    for fold in which if which is not None else fold_numbers(folds):
        callbacks = callbacks_for(fold) if callbacks_for else ()
        metrics = run_fold(
            model,
            data,
            folds,
            fold,
            run_dir,
            score_fn,
            test,
            metric_name=metric_name,
            force=force,
            callbacks=callbacks,
        )
        results.append(metrics)
        if on_fold_end is not None:
            on_fold_end(fold, metrics)
    return results


def run_full(
    model,
    data: TrainData,
    run_dir: str | Path,
    test: TestData,
    *,
    force: bool = False,
    callbacks: Sequence = (),
) -> dict:
    """Refit a clone on every labelled row (no OOF, no score) and predict the test set: ``<run>/full/``.

    The Kaggle habit of a final fit on all the data once CV has chosen the params (``--fold full``, the ``-1``
    fold of many solutions). Its submission is written beside the k-fold one, never instead of it."""
    out = Path(run_dir) / "full"
    if (previous := _previous(out, force)) is not None:
        return previous
    started = time.perf_counter()
    estimator = _fit_clone(model, data.X, data.y, out, callbacks)
    test_proba = _proba(estimator, test.X, class_list(data.y))
    metrics = {
        "fold": "full",
        "seconds": round(time.perf_counter() - started, 3),
        "n_train": int(len(data.y)),
    }
    _save(out, estimator, {"test.npy": test_proba}, metrics)
    return {**metrics, "test_proba": test_proba}


def missing_folds(run_dir: str | Path, folds: np.ndarray) -> list[int]:
    return [k for k in fold_numbers(folds) if not is_fold_complete(run_dir, k)]


def merge(
    run_dir: str | Path, data: TrainData, folds: np.ndarray, score_fn: ScoreFn, metric_name: str = "score"
) -> dict:
    """Assemble the full OOF (data order), score it, average test probabilities; write oof/test/cv.json."""
    run_dir = Path(run_dir)
    missing = missing_folds(run_dir, folds)
    if missing:
        raise UserError(f"{run_dir}: fold(s) {missing} are not complete; run them before merging")
    ids = np.asarray(data.ids).astype(str)
    covered = np.flatnonzero(folds >= 0)
    oof = None
    test_parts, fold_scores, seconds = [], [], 0.0
    for k in fold_numbers(folds):
        d = fold_dir(run_dir, k)
        part = np.load(d / "oof.npy")
        part_ids = np.load(d / "oof_ids.npy")
        rows = np.flatnonzero(folds == k)
        if len(part) != len(rows) or not np.array_equal(part_ids, ids[rows]):
            raise UserError(
                f"{d}: its OOF rows do not match the folds of this data (was it made from other data?)"
            )
        if oof is None:
            oof = np.zeros((len(ids),) + part.shape[1:], dtype=np.float32)
        oof[rows] = part
        metrics = json.loads((d / "metrics.json").read_text())
        fold_scores.append(metrics["score"])
        seconds += metrics.get("seconds", 0.0)
        if (d / "test.npy").is_file():
            test_parts.append(np.load(d / "test.npy"))
    oof = oof[covered]
    score = float(score_fn(data.y[covered], oof))
    write_npy(run_dir / "oof.npy", oof)
    write_npy(run_dir / "oof_ids.npy", ids[covered])
    test_proba = None
    if test_parts and len(test_parts) == len(fold_scores):
        test_proba = np.mean(test_parts, axis=0).astype(np.float32)
        write_npy(run_dir / "test.npy", test_proba)
    summary = {
        "score": score,
        "metric": metric_name,
        "fold_scores": fold_scores,
        "n_folds": len(fold_scores),
        "seconds": round(seconds, 3),
    }
    write_json(run_dir / "cv.json", summary)
    summary["test_proba"] = test_proba
    return summary

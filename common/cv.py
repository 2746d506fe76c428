"""Cross-validation for any registered model: one fold is the unit of work.

Each fold clones the model (sklearn's ``clone``), fits it on the training rows only (the validation fold's labels
never reach the model), and stores through the run store (:mod:`common.store`): the model, ``oof.npy`` +
``oof_ids.npy`` (validation probabilities), ``test.npy`` and, last, ``metrics.json``, the completion marker. A
complete fold is skipped unless ``force``; so folds can run separately, in parallel (``make -j``) and resume.
:func:`merge` assembles the OOF, computes the CV score and averages the test probabilities.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from sklearn.base import clone

from common import distributed
from common.competition import Competition, TestData, TrainData
from common.errors import UserError
from common.store import FULL, OOF, OOF_IDS, TEST, RunStore


def take(X, idx: np.ndarray):
    """Rows ``idx`` of ``X``: numpy arrays, DataFrames (by position), lists, or any object indexable by arrays."""
    idx = np.asarray(idx)
    if hasattr(X, "iloc"):
        return X.iloc[idx].reset_index(drop=True)
    if isinstance(X, list | tuple):
        return [X[i] for i in idx]
    return X[idx]


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


def predict_proba(estimator, X, classes: list | None) -> np.ndarray:
    """float32 probabilities with columns in the order of the data's full class list."""
    return align_columns(estimator, np.asarray(estimator.predict_proba(X), dtype=np.float32), classes)


def _fit_kwargs(model, work_dir, callbacks: Sequence) -> dict:
    params = inspect.signature(model.fit).parameters
    kwargs = {}
    if "work_dir" in params:
        kwargs["work_dir"] = work_dir
    if "callbacks" in params:
        kwargs["callbacks"] = list(callbacks)
    return kwargs


def _skip(store: RunStore, fold: int | str, force: bool) -> dict | None:
    """The metrics of a complete fold (or refit), to skip it; otherwise the fold is made ready to (re)train."""
    if store.is_complete(fold) and not force:
        return {**store.read_fold_metrics(fold), "skipped": True}
    if distributed.is_main_process():
        store.start_fold(fold, force)
    return None


def _fit(model, X, y, store: RunStore, fold: int | str, callbacks: Sequence):
    estimator = clone(model)
    estimator.fit(X, y, **_fit_kwargs(estimator, store.fold_dir(fold), callbacks))
    return estimator


def run_fold(
    model,
    data: TrainData,
    folds: np.ndarray,
    fold: int,
    store: RunStore,
    competition: Competition,
    test: TestData | None = None,
    *,
    force: bool = False,
    callbacks: Sequence = (),
    save_model: bool = True,
) -> dict:
    """Fit a clone of ``model`` on every row whose fold is not ``fold`` and predict that fold (and the test)."""
    if (previous := _skip(store, fold, force)) is not None:
        return previous
    valid_mask = folds == fold
    if not valid_mask.any():
        raise UserError(f"fold {fold} has no rows; folds are {fold_numbers(folds)}")
    train_idx, valid_idx = np.flatnonzero(~valid_mask), np.flatnonzero(valid_mask)
    started = time.perf_counter()
    estimator = _fit(model, take(data.X, train_idx), data.y[train_idx], store, fold, callbacks)
    classes = class_list(data.y)
    arrays = {
        OOF: predict_proba(estimator, take(data.X, valid_idx), classes),
        OOF_IDS: np.asarray(data.ids).astype(str)[valid_idx],
    }
    if test is not None:
        arrays[TEST] = predict_proba(estimator, test.X, classes)
    metrics = {
        "fold": int(fold),
        "score": float(competition.score(data.y[valid_idx], arrays[OOF])),
        "metric": competition.metric.name,
        # a fold resumed after a crash counts the time spent before it too
        "seconds": round(time.perf_counter() - started + float(getattr(estimator, "prior_seconds_", 0.0)), 3),
        "n_train": int(len(train_idx)),
        "n_valid": int(len(valid_idx)),
    }
    if distributed.is_main_process():
        store.save_fold(fold, estimator if save_model else None, arrays, metrics)
    return metrics


def run_folds(
    model,
    data: TrainData,
    folds: np.ndarray,
    store: RunStore,
    competition: Competition,
    which: Iterable[int] | None = None,
    test: TestData | None = None,
    *,
    force: bool = False,
    callbacks_for: Callable[[int], Sequence] | None = None,
    on_fold_end: Callable[[int, dict], None] | None = None,
) -> list[dict]:
    """Run the folds in ``which`` (default all); complete folds are skipped unless ``force``."""
    results = []
    for fold in which if which is not None else fold_numbers(folds):
        callbacks = callbacks_for(fold) if callbacks_for else ()
        metrics = run_fold(
            model, data, folds, fold, store, competition, test, force=force, callbacks=callbacks
        )
        results.append(metrics)
        if on_fold_end is not None:
            on_fold_end(fold, metrics)
    return results


def run_full(
    model, data: TrainData, store: RunStore, test: TestData, *, force: bool = False, callbacks: Sequence = ()
) -> dict:
    """Refit a clone on every labelled row (no OOF, no score) and predict the test set: ``<run>/full/``.

    The Kaggle habit of a final fit on all the data once CV has chosen the params (``--fold full``, the ``-1``
    fold of many solutions). Its submission is written beside the k-fold one, never instead of it."""
    if (previous := _skip(store, FULL, force)) is not None:
        return previous
    started = time.perf_counter()
    estimator = _fit(model, data.X, data.y, store, FULL, callbacks)
    test_proba = predict_proba(estimator, test.X, class_list(data.y))
    metrics = {
        "fold": FULL,
        "seconds": round(time.perf_counter() - started + float(getattr(estimator, "prior_seconds_", 0.0)), 3),
        "n_train": int(len(data.y)),
    }
    if distributed.is_main_process():
        store.save_fold(FULL, estimator, {TEST: test_proba}, metrics)
    return {**metrics, "test_proba": test_proba}


def repredict_test(store: RunStore, folds: Sequence[int | str], test: TestData, classes: list | None) -> list:
    """New test probabilities from the stored models of the complete ``folds`` (the test data changed; the
    models did not): no retraining; the caller holds the folds' locks. Under torchrun every rank predicts (a
    model's prediction may be sharded across the ranks) and rank 0 writes. Returns the folds re-predicted."""
    done = []
    for fold in folds:
        if not store.is_complete(fold):
            continue
        proba = predict_proba(store.load_model(fold), test.X, classes)
        if distributed.is_main_process():
            store.write_fold_test(fold, proba)
        done.append(fold)
    return done


def missing_folds(store: RunStore, folds: np.ndarray) -> list[int]:
    return [k for k in fold_numbers(folds) if not store.is_complete(k)]


def merge(store: RunStore, data: TrainData, folds: np.ndarray, competition: Competition) -> dict:
    """Assemble the full OOF (data order), score it, average test probabilities; write them and ``cv.json``."""
    missing = missing_folds(store, folds)
    if missing:
        raise UserError(f"{store.path}: fold(s) {missing} are not complete; run them before merging")
    ids = np.asarray(data.ids).astype(str)
    covered = np.flatnonzero(folds >= 0)
    oof = None
    test_parts, fold_scores, seconds = [], [], 0.0
    for k in fold_numbers(folds):
        d = store.fold_dir(k)
        part = store.read_array(d.name + "/" + OOF)
        part_ids = store.read_array(d.name + "/" + OOF_IDS)
        rows = np.flatnonzero(folds == k)
        if len(part) != len(rows) or not np.array_equal(part_ids.astype(str), ids[rows]):
            raise UserError(
                f"{d}: its OOF rows do not match the folds of this data (was it made from other data?)"
            )
        if oof is None:
            oof = np.zeros((len(ids),) + part.shape[1:], dtype=np.float32)
        oof[rows] = part
        metrics = store.read_fold_metrics(k)
        fold_scores.append(metrics["score"])
        seconds += metrics.get("seconds", 0.0)
        if (d / TEST).is_file():
            test_parts.append(store.read_array(d.name + "/" + TEST))
    oof = oof[covered]
    score = float(competition.score(data.y[covered], oof))
    test_proba = None
    if test_parts and len(test_parts) == len(fold_scores):
        test_proba = np.mean(test_parts, axis=0).astype(np.float32)
    summary = {
        "score": score,
        "metric": competition.metric.name,
        "fold_scores": fold_scores,
        "n_folds": len(fold_scores),
        "seconds": round(seconds, 3),
    }
    store.write_merged(oof, ids[covered], test_proba, summary)
    summary["test_proba"] = test_proba
    return summary

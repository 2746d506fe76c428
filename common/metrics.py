"""Metrics: pure functions on numpy arrays returning floats, looked up by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn import metrics as skm

from common.errors import UserError


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-averaged F1 over the classes present in either array (the news contest's metric).

    Same value as ``sklearn.metrics.f1_score(average="macro")`` (a class never predicted nor true is absent; a
    class with no true positives scores 0), computed with bincount: about 10x faster, which matters when a blend
    evaluates it hundreds of times on 200k rows."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch: {y_true.shape} vs {y_pred.shape}")
    if len(y_true) == 0:
        return 0.0
    small_ints = y_true.dtype.kind in "iu" and y_pred.dtype.kind in "iu"
    if small_ints and min(y_true.min(), y_pred.min()) >= 0 and max(y_true.max(), y_pred.max()) < 100_000:
        t, p = y_true.astype(np.int64), y_pred.astype(np.int64)
    else:
        _, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
        t, p = codes[: len(y_true)], codes[len(y_true) :]
    n = int(max(t.max(), p.max())) + 1
    tp = np.bincount(t[t == p], minlength=n).astype(np.float64)
    denom = np.bincount(t, minlength=n) + np.bincount(p, minlength=n)
    present = denom > 0
    return float((2 * tp[present] / denom[present]).mean())


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(skm.accuracy_score(np.asarray(y_true), np.asarray(y_pred)))


def string_accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Whole-string accuracy: a prediction counts only if every character matches (the street contest's metric)."""
    y_true = np.asarray(y_true, dtype=object).astype(str)
    y_pred = np.asarray(y_pred, dtype=object).astype(str)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch: {y_true.shape} vs {y_pred.shape}")
    return float(np.mean(y_true == y_pred)) if len(y_true) else 0.0


def log_loss(y_true: np.ndarray, proba: np.ndarray, labels: Sequence | None = None) -> float:
    """Multi-class log-loss of probabilities ``proba`` (n, n_classes); columns follow ``labels`` (default 0..C-1)."""
    proba = np.asarray(proba, dtype=np.float64)
    if labels is None:
        labels = np.arange(proba.shape[1])
    return float(skm.log_loss(np.asarray(y_true), proba, labels=list(labels)))


METRICS: dict[str, Callable[..., float]] = {
    "macro_f1": macro_f1,
    "accuracy": accuracy,
    "string_accuracy": string_accuracy,
    "log_loss": log_loss,
}

#: Metrics where a smaller value is better.
LOWER_IS_BETTER = frozenset({"log_loss"})


def get_metric(name: str) -> Callable[..., float]:
    try:
        return METRICS[name]
    except KeyError:
        raise UserError(f"unknown metric {name!r}; expected one of {sorted(METRICS)}") from None

"""Where a run goes wrong, from its OOF probabilities and the true targets: pure functions returning tables.

Predictions are decoded the way the contest decodes them for a submission (the last column of its
``submission_frame``), so a class index for the news contest and a digit string for the street contest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from common.competition import Competition, TestData


def decode(competition: Competition, proba: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Predicted targets as the contest submits them (falls back to the argmax for ``(n, n_classes)``)."""
    try:
        frame = competition.submission_frame(TestData(X=None, ids=np.asarray(ids)), proba)
        values = frame.iloc[:, -1].to_numpy()
        if len(values) == len(proba):
            return values
    except Exception:  # noqa: BLE001 - a contest whose submission needs more than ids: use the argmax
        pass
    return np.asarray(proba).argmax(axis=-1)


def as_strings(values) -> np.ndarray:
    return np.asarray([str(v) for v in values], dtype=object)


def confidence(proba: np.ndarray) -> np.ndarray:
    """How sure the model is of its prediction: the top probability (per position, multiplied for sequences)."""
    top = np.asarray(proba, dtype=np.float64).max(axis=-1)
    return top.reshape(len(top), -1).prod(axis=1)


def per_class_report(y_true, y_pred) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, sorted by class."""
    labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return pd.DataFrame({"class": labels, "precision": p, "recall": r, "f1": f, "support": s})


def confusion(y_true, y_pred, normalize: bool = True) -> pd.DataFrame:
    """Confusion matrix (rows: true class, columns: predicted), row-normalised by default."""
    labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    matrix = confusion_matrix(y_true, y_pred, labels=labels).astype(np.float64)
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    return pd.DataFrame(
        matrix, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted")
    )


def accuracy_by_length(y_true, y_pred) -> pd.DataFrame:
    """Whole-string accuracy by the true string's length (number of digits)."""
    frame = pd.DataFrame({"true": as_strings(y_true), "pred": as_strings(y_pred)})
    frame["n_chars"] = frame["true"].str.len()
    frame["correct"] = frame["true"] == frame["pred"]
    out = frame.groupby("n_chars").agg(n=("correct", "size"), accuracy=("correct", "mean")).reset_index()
    return out


def hardest(ids, y_true, y_pred, proba: np.ndarray, n: int = 12) -> pd.DataFrame:
    """The ``n`` most confident mistakes: row position, id, true, predicted, confidence."""
    y_true, y_pred = as_strings(y_true), as_strings(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    conf = confidence(proba)[wrong]
    order = wrong[np.argsort(-conf, kind="stable")][:n]
    return pd.DataFrame(
        {
            "row": order,
            "id": np.asarray(ids)[order],
            "true": y_true[order],
            "pred": y_pred[order],
            "confidence": confidence(proba)[order],
        }
    )


def load_image(X, row: int, sample_id: str, data_dir: Path | None) -> np.ndarray | None:
    """The image of a training row: ``X[row]`` when it is a path or an array, else a file named like the id
    under ``data_dir``; ``None`` when none is found."""
    try:
        item = X[row]
    except (TypeError, IndexError, KeyError):
        item = None
    if isinstance(item, np.ndarray) and item.ndim in (2, 3):
        return item
    candidates = []
    if isinstance(item, str | Path):
        candidates.append(Path(item))
    if data_dir is not None:
        candidates.append(Path(data_dir) / sample_id)
        candidates.extend(Path(data_dir).glob(f"*/{Path(sample_id).name}"))
        candidates.extend(Path(data_dir).glob(f"*/{Path(sample_id).name}.png"))
    for path in candidates:
        if path.is_file():
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
    return None

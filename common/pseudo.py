"""Pseudo-labelling: train a run again on its training rows plus the test rows its models are sure about.

``python -m competitions.<comp> pseudo --run-dir RUN [--threshold 0.95] [--out RUN-pseudo]`` (``make pseudo``)
trains the source run's model, with the same params, data section and folds, into a new run directory.

- **Which rows.** The contest's :meth:`~common.competition.Competition.pseudo_labels` gives each test row a label
  and a confidence, the probability of that label: the top class probability (news), the probability of the whole
  decoded string, a product over positions (street). Rows with confidence ``>= threshold`` are kept.
- **Fold discipline.** Pseudo rows are only ever training rows (fold -1): never validated, never in the OOF. The
  labelled rows keep the source run's folds file, so the new run is scored on the same rows and folds as its
  source (its CV is comparable, and the two can be blended).
- **No label of a validation fold leaks through the pseudo labels.** Fold k of the new run is trained with the
  test rows as labelled by the source's fold-k model (``fold<k>/test.npy``), which never saw fold k's labels. The
  merged ``test.npy`` would not do: it averages every fold model, and all but one of them trained on fold k's
  rows, so a test document close to a fold-k row would carry that row's true label into fold k's training and
  flatter the CV. So each fold has its own set of pseudo rows (their counts are recorded per fold).
- **Provenance.** ``config.yaml`` holds ``pseudo: {from, threshold, labels, test_rows, rows: {fold: n}, digest}``
  (``digest``: a hash of the selected rows and their labels); resuming into the same folder with another threshold,
  or after the source was retrained, is refused unless ``--force``. The run records the test files among its
  training inputs, so a changed test file reads as changed training data.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np

from common import cv
from common.cli import check_data, check_model, data_dir_of, finish_run, open_session, report_fold, run_inputs
from common.competition import Competition, TrainData
from common.config import to_dict
from common.errors import UserError
from common.fingerprint import changed, fingerprints
from common.folds import load_folds
from common.registry import create_model
from common.store import RunStore, open_run

LABELS = "fold<k>/test.npy of the source: fold k's own model, which never saw fold k's labels"


def select(competition: Competition, proba: np.ndarray, classes: list | None, threshold: float):
    """``(rows, labels)`` of the test rows whose confidence is at least ``threshold``."""
    labels, confidence = competition.pseudo_labels(proba, classes)
    labels = np.asarray(labels)
    keep = np.asarray(confidence) >= threshold
    if labels.dtype.kind in "US":  # an empty decoded string is no label to train on
        keep &= labels != labels.dtype.type("")
    rows = np.flatnonzero(keep)
    return rows, labels[rows]


def with_pseudo_rows(
    train: TrainData, X_all, folds: np.ndarray, test_ids: np.ndarray, rows: np.ndarray, labels: np.ndarray
) -> TrainData:
    """The training rows on their folds, then the test rows ``rows`` (of ``X_all``'s test part) labelled
    ``labels`` on fold -1: trained on in every fold, never validated. Ids of pseudo rows are ``pseudo:<test id>``."""
    n = len(train.ids)
    X = cv.take(X_all, np.r_[np.arange(n), n + np.asarray(rows, dtype=np.int64)])
    y_train, labels = np.asarray(train.y), np.asarray(labels)
    if y_train.dtype.kind in "iub":
        labels = labels.astype(y_train.dtype)
    y = np.concatenate([y_train, labels])  # strings widen to the longest: a pseudo label is never cut short
    ids = np.r_[
        np.asarray(train.ids).astype(str), np.char.add("pseudo:", np.asarray(test_ids)[rows].astype(str))
    ]
    strata = np.r_[np.asarray(train.strata).astype(str), np.full(len(rows), "pseudo")]
    fold = np.r_[np.asarray(folds, dtype=np.int64), np.full(len(rows), -1, dtype=np.int64)]
    return TrainData(X=X, y=y, ids=ids, strata=strata, folds=fold, sources=list(train.sources))


def _digest(selected: dict[int, tuple[np.ndarray, np.ndarray]]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(selected):
        rows, labels = selected[k]
        h.update(f"{k}:".encode() + np.asarray(rows, dtype=np.int64).tobytes())
        h.update("\x1f".join(map(str, labels)).encode() + b"\x1e")
    return h.hexdigest()


def _say(*args) -> None:
    print(*args, flush=True)


def pseudo_cli(competition: Competition, args) -> int:
    """The ``pseudo`` verb (see the module docstring)."""
    if not 0.0 < args.threshold <= 1.0:
        raise UserError(f"--threshold {args.threshold}: expected a probability in (0, 1]")
    source = open_run(args.run_dir)
    if source.competition != competition.name:
        raise UserError(f"{source.path} is a run of {source.competition!r}, not {competition.name!r}")
    if source.is_blend:
        raise UserError(
            f"{source.path} is a blend: it has no model of its own to retrain; pseudo-label from one of its members"
        )
    if not source.complete:
        raise UserError(f"{source.path} is not complete (train all its folds and merge them first)")
    stale = source.data_changed()
    if stale:
        raise UserError(
            f"the training data changed since {source.path} was trained ({', '.join(stale)} differ)"
        )
    check_model(competition, source.model)
    if not args.data_dir and source.data_dir:
        args.data_dir = source.data_dir
    data_dir = data_dir_of(competition, args)
    from common.blend import data_config

    data_cfg = data_config(competition, source)
    train = competition.load_train(data_dir, data_cfg)
    test = competition.load_test(data_dir, data_cfg)
    if test is None:
        raise UserError(f"no test file in {data_dir}: nothing to pseudo-label")
    recorded = (source.manifest.get("inputs") or {}).get("test") or {}
    moved = changed(recorded, fingerprints(test.sources))
    if moved:
        raise UserError(
            f"the test data changed since {source.path} predicted it ({', '.join(moved)} differ); re-run its "
            "train command first (it re-predicts the test set without retraining)"
        )
    if not source.folds_file:
        raise UserError(f"{source.path}: its config names no folds file")
    folds = load_folds(source.folds_file, train.ids, train.strata)
    fold_list = cv.fold_numbers(folds)
    classes = source.config.get("classes")
    selected = {}
    for k in fold_list:
        proba = source.fold_test(k)
        if proba is None:
            raise UserError(
                f"{source.fold_dir(k)} has no test predictions (test.npy); was it trained without a test file?"
            )
        if len(proba) != len(test.ids):
            raise UserError(
                f"{source.fold_dir(k)}/test.npy has {len(proba)} rows; the test data has {len(test.ids)}"
            )
        selected[k] = select(competition, proba, classes, args.threshold)
    out = Path(args.out) if args.out else Path(str(source.path).rstrip("/") + "-pseudo")
    if out.resolve() == source.path.resolve():
        raise UserError(f"--out {out} is the source run; choose another directory")
    pseudo = {
        "from": str(source.path),
        "threshold": float(args.threshold),
        "labels": LABELS,
        "test_rows": int(len(test.ids)),
        "rows": {str(k): int(len(rows)) for k, (rows, _) in selected.items()},  # str: as YAML keeps them
        "digest": _digest(selected),
    }
    params = copy.deepcopy(source.config.get("params") or {})
    if args.quiet and isinstance(params.get("trainer"), dict):
        params["trainer"]["quiet"] = True
    model = create_model(source.model, where=competition.models_module, **params)
    reason = getattr(model, "pseudo_unsupported", None)
    if reason:
        raise UserError(f"{source.path}: {source.model} cannot be pseudo-labelled: {reason}")
    X_all = competition.join_x(train.X, test.X)
    first = with_pseudo_rows(train, X_all, folds, test.ids, *selected[fold_list[0]])
    check_data(model, first)
    config = {
        "competition": competition.name,
        "model": source.model,
        "n_folds": len(fold_list),
        "seed": source.config.get("seed"),
        "folds_file": source.folds_file,
        "data_dir": str(data_dir),
        "data": to_dict(data_cfg),
        "params": params,
        "classes": classes,
        "pseudo": pseudo,
    }
    inputs = run_inputs(
        TrainData(
            X=None, y=train.y, ids=train.ids, strata=train.strata, sources=[*train.sources, *test.sources]
        ),
        test,
        model,
    )
    counts = ", ".join(f"fold {k}: {n}" for k, n in pseudo["rows"].items())
    _say(
        f"{source.name} ({source.model}, CV {competition.metric.name} {source.score:.5f}): test rows with "
        f"confidence >= {args.threshold:g}, of {len(test.ids)}: {counts}"
    )
    store = RunStore(out)
    session = open_session(
        store,
        config,
        inputs,
        fold_list,
        model,
        int(source.config.get("seed") or 0),
        args.force,
        to_dict(competition.data_config()),
        competition.data_config.RUNTIME_KEYS,
    )
    results = []
    try:
        for k in fold_list:
            data = (
                first if k == fold_list[0] else with_pseudo_rows(train, X_all, folds, test.ids, *selected[k])
            )
            metrics = cv.run_fold(model, data, data.folds, k, store, competition, test, force=args.force)
            report_fold(store, competition, k, metrics)
            results.append(metrics)
    finally:
        session.release()
    finish_run(competition, store, train, folds, test, results, args.submissions_dir)
    return 0

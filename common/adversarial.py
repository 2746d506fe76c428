"""Adversarial validation: can a classifier tell the training rows from the test rows?

Each row is labelled 1 if it comes from the test file and 0 if from the training file; a classifier is
cross-validated on that task (stratified k folds, every row scored once, out of fold). Its AUC says how different
the two sets are: near 0.5 they look alike (a random k-fold CV should track the leaderboard); well above it the test
set has shifted, and the features the classifier leans on say how. Each training row's out-of-fold probability of
being a test row is its *test-likeness*.

What the classifier sees is the contest's choice (:meth:`common.competition.Competition.adversarial_features`),
built with one of the helpers here:

- :func:`text_features`: TF-IDF over token uni/bi-grams plus the document's length (tokens, distinct tokens,
  their ratio), for a logistic regression; a feature's weight is its coefficient times its mean difference
  between the test and training rows: its part of the gap in mean log-odds between the two sets (comparable
  across n-grams and lengths; a coefficient fitted to noise on a feature that does not differ weighs nothing);
- :func:`image_features`: per image width, height, aspect, brightness, contrast, saturation, warmth (red minus
  blue), sharpness and bytes per pixel, for gradient boosting; a feature's weight is the AUC lost when it is
  shuffled in the validation fold (permutation importance);
- :func:`table_features`: a table's columns as they are (categories as codes), for gradient boosting.

Outputs go to ``runs/<competition>/adversarial/`` through :class:`common.store.AdversarialStore`: ``scores.csv``
(every row's score) and ``report.json`` (AUC with its fold spread, the separating features with their train and
test means, the most test-like training rows, and the content fingerprints of the data). Nothing is pickled.

``folds_from=adversarial`` (a data key) turns the scores into folds: :func:`holdout_folds` puts the
``holdout_share`` most test-like rows of each class into one holdout fold (0) and makes every other row
train-only (-1), so the CV score is measured on the rows that look most like the test set. It refuses scores made
from other data (a changed training or test file) and a contest's own predefined split (street's
``split=official``): both would choose the validation rows.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from common.competition import Competition, DataConfig, TestData, TrainData
from common.config import build_tree, parse_overrides, to_dict
from common.errors import UserError
from common.fingerprint import changed, fingerprints
from common.store import AdversarialStore, git_state

#: AUC bounds of the verdict: below the first the sets look alike, above the second the shift is strong
ALIKE, STRONG = 0.55, 0.70
IMAGE_STATS = (
    "width", "height", "aspect", "brightness", "contrast", "saturation", "warmth", "sharpness", "bytes_per_pixel",
)  # fmt: skip
TEXT_LENGTHS = ("n_tokens", "n_distinct_tokens", "distinct_share")
MODELS = {
    "linear": "logistic regression (weight: coefficient x (test mean - train mean), its part of the log-odds gap)",
    "gbdt": "gradient boosting (weight: AUC lost when the feature is shuffled)",
}


@dataclass
class AdversarialFeatures:
    """What the adversarial classifier sees: ``X`` holds the training rows, then the test rows."""

    X: Any  # ndarray or scipy sparse matrix, (n_train + n_test, n_features)
    names: list[str]
    model: Literal["linear", "gbdt"]
    #: the same columns as the report shows them (an n-gram: 1 if present; a length: the raw count); None: X
    shown: Any = None
    #: one line saying what the features are, for the report
    description: str = ""
    #: how to read a feature's train and test means when it is not obvious
    note: str = ""


# ------------------------------------------------------------------------------------------------ features
def text_features(
    train_texts,
    test_texts,
    *,
    token_pattern: str = r"\S+",
    ngram_max: int = 2,
    min_df: int = 3,
    max_features: int = 100_000,
    lowercase: bool = False,
) -> AdversarialFeatures:
    """TF-IDF over token 1..``ngram_max``-grams (fitted on every row's text: no label is involved) and three
    length features (log-scaled and standardised for the model, raw in the report)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = np.concatenate([np.asarray(train_texts, dtype=object), np.asarray(test_texts, dtype=object)])
    vectorizer = TfidfVectorizer(
        token_pattern=token_pattern,
        lowercase=lowercase,
        ngram_range=(1, ngram_max),
        min_df=min(min_df, max(1, len(texts) // 10)),
        max_features=max_features,
        sublinear_tf=True,
        dtype=np.float32,
    )
    try:
        tfidf = vectorizer.fit_transform(texts).tocsr()
        grams = [f"'{g}'" for g in vectorizer.get_feature_names_out()]
    except ValueError:  # no token in any document: the lengths are all there is
        tfidf, grams = sparse.csr_matrix((len(texts), 0), dtype=np.float32), []
    split = str.split if token_pattern == r"\S+" else vectorizer.build_tokenizer()
    tokens = [split(t) for t in texts]
    n_tokens = np.array([len(t) for t in tokens], dtype=np.float64)
    n_distinct = np.array([len(set(t)) for t in tokens], dtype=np.float64)
    lengths = np.column_stack([n_tokens, n_distinct, n_distinct / np.maximum(n_tokens, 1)])
    scaled = np.column_stack([np.log1p(lengths[:, 0]), np.log1p(lengths[:, 1]), lengths[:, 2]])
    scaled = (scaled - scaled.mean(0)) / np.where(scaled.std(0) > 0, scaled.std(0), 1.0)
    presence = tfidf.copy()
    presence.data[:] = 1.0
    return AdversarialFeatures(
        X=sparse.hstack([tfidf, sparse.csr_matrix(scaled.astype(np.float32))]).tocsr(),
        names=grams + list(TEXT_LENGTHS),
        model="linear",
        shown=sparse.hstack([presence, sparse.csr_matrix(lengths)]).tocsr(),
        description=f"TF-IDF of token 1-{ngram_max}-grams ({len(grams)}) + document length",
        note="an n-gram's is the share of rows containing it",
    )


def image_stats(path: str | os.PathLike) -> np.ndarray:
    """:data:`IMAGE_STATS` of one image file (NaN for each when it cannot be decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            width, height = img.size
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
        size = os.path.getsize(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return np.full(len(IMAGE_STATS), np.nan)
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    top, bottom = rgb.max(2), rgb.min(2)
    saturation = np.where(top > 0, (top - bottom) / np.maximum(top, 1e-6), 0.0).mean()
    if min(gray.shape) >= 3:  # variance of the 4-neighbour Laplacian: blur lowers it
        lap = gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4 * gray[1:-1, 1:-1]
        sharpness = float(lap.var())
    else:
        sharpness = 0.0
    return np.array(
        [
            width,
            height,
            width / max(height, 1),
            gray.mean(),
            gray.std(),
            saturation,
            (rgb[..., 0] - rgb[..., 2]).mean(),
            sharpness,
            size / max(width * height, 1),
        ]
    )


def image_features(paths, workers: int | None = None) -> AdversarialFeatures:
    """:data:`IMAGE_STATS` of each image (training images first, then test images), read in parallel threads."""
    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        rows = list(pool.map(image_stats, paths, chunksize=64))
    X = np.vstack(rows) if rows else np.zeros((0, len(IMAGE_STATS)))
    bad = int(np.isnan(X[:, 0]).sum())
    if bad:
        print(f"warning: {bad} image(s) could not be decoded; their statistics are missing values")
    return AdversarialFeatures(
        X=X, names=list(IMAGE_STATS), model="gbdt", description="image size, colour and sharpness statistics"
    )


def table_features(train: pd.DataFrame, test: pd.DataFrame) -> AdversarialFeatures:
    """The columns of a table as numbers: numeric ones as they are, any other as category codes (missing: NaN)."""
    frame = pd.concat([train, test], ignore_index=True)
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            columns[name] = column.astype(np.float64).to_numpy()
        else:
            codes = pd.Categorical(column.astype("string")).codes.astype(np.float64)
            columns[name] = np.where(codes < 0, np.nan, codes)
    X = np.column_stack(list(columns.values())) if columns else np.zeros((len(frame), 0))
    return AdversarialFeatures(
        X=X, names=[str(c) for c in columns], model="gbdt", description="the table's columns"
    )


# ------------------------------------------------------------------------------------------------ the model
def _classifier(kind: str, seed: int):
    if kind == "linear":
        from sklearn.linear_model import SGDClassifier

        # logistic loss by SGD: linear in the rows, so the full news contest (250k documents) fits in minutes
        return SGDClassifier(
            loss="log_loss", alpha=1e-4, max_iter=50, tol=1e-4, class_weight="balanced", random_state=seed
        )
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20, l2_regularization=1.0,
        class_weight="balanced", early_stopping=False, random_state=seed,
    )  # fmt: skip


def _mean_gap(X, n_train: int) -> np.ndarray:
    """Per column: mean over the test rows minus mean over the training rows."""
    if sparse.issparse(X):
        return np.asarray(X[n_train:].mean(0)).ravel() - np.asarray(X[:n_train].mean(0)).ravel()
    return np.nanmean(X[n_train:], axis=0) - np.nanmean(X[:n_train], axis=0)


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    ok = ~np.isnan(score)
    if len(np.unique(y[ok])) < 2:
        return 0.5
    return float(roc_auc_score(y[ok], score[ok]))


@dataclass
class CVResult:
    score: np.ndarray  # out-of-fold P(test) of every row
    fold: np.ndarray
    fold_aucs: list[float]
    auc: float
    weights: np.ndarray  # (n_folds, n_features)


def cross_validate(features: AdversarialFeatures, n_train: int, n_folds: int = 5, seed: int = 42) -> CVResult:
    """Out-of-fold test-likeness of every row, the AUC of each fold and every feature's weight in each fold."""
    X = features.X.tocsr() if sparse.issparse(features.X) else np.asarray(features.X, dtype=np.float64)
    n = X.shape[0]
    y = np.r_[np.zeros(n_train, dtype=np.int64), np.ones(n - n_train, dtype=np.int64)]
    if min(n_train, n - n_train) < n_folds:
        raise UserError(
            f"adversarial validation with {n_folds} folds needs at least {n_folds} training and {n_folds} test "
            f"rows; got {n_train} and {n - n_train}"
        )
    gap = _mean_gap(X, n_train) if features.model == "linear" else None
    rng = np.random.default_rng(seed)
    score, fold = np.zeros(n), np.full(n, -1, dtype=np.int64)
    aucs, weights = [], np.zeros((n_folds, X.shape[1]))
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (train_idx, valid_idx) in enumerate(splitter.split(np.zeros(n), y)):
        model = _classifier(features.model, seed).fit(X[train_idx], y[train_idx])
        X_valid, y_valid = X[valid_idx], y[valid_idx]
        score[valid_idx] = model.predict_proba(X_valid)[:, 1]
        fold[valid_idx] = k
        aucs.append(_auc(y_valid, score[valid_idx]))
        if features.model == "linear":
            weights[k] = model.coef_[0] * gap
        else:
            for j in range(X.shape[1]):
                shuffled = X_valid.copy()
                shuffled[:, j] = rng.permutation(shuffled[:, j])
                weights[k, j] = aucs[-1] - _auc(y_valid, model.predict_proba(shuffled)[:, 1])
    return CVResult(score, fold, aucs, _auc(y, score), weights)


def feature_table(features: AdversarialFeatures, result: CVResult, n_train: int, top: int) -> list[dict]:
    """The ``top`` features by weight, each with its mean in the
    training and test rows (an n-gram's: the share of rows containing it) and its AUC alone (> 0.5: larger values
    in the test set)."""
    weight = result.weights.mean(0)
    order = np.argsort(-weight, kind="stable")[:top]
    shown = features.shown if features.shown is not None else features.X
    shown = shown.tocsc() if sparse.issparse(shown) else np.asarray(shown, dtype=np.float64)
    y = np.r_[np.zeros(n_train), np.ones(shown.shape[0] - n_train)]
    rows = []
    for j in order:
        column = shown[:, j]
        column = column.toarray().ravel() if sparse.issparse(column) else np.asarray(column, dtype=np.float64)
        train, test = np.nanmean(column[:n_train]), np.nanmean(column[n_train:])
        rows.append(
            {
                "feature": features.names[j],
                "weight": round(float(weight[j]), 5),
                "weight_std": round(float(result.weights[:, j].std()), 5),
                "train": round(float(train), 5),
                "test": round(float(test), 5),
                "auc_alone": round(_auc(y, column), 4),
                "more_in": "test" if test > train else "train",
            }
        )
    return rows


def verdict(auc: float) -> str:
    if auc < ALIKE:
        return "train and test look alike: a random k-fold CV should track the leaderboard"
    if auc < STRONG:
        return (
            "a mild shift between train and test: check the features below; folds_from=adversarial validates on "
            "the most test-like rows"
        )
    return (
        "a strong shift between train and test: a random k-fold CV may mislead; check the features below and "
        "consider folds_from=adversarial"
    )


# ------------------------------------------------------------------------------------------------ the run
def _label(y: np.ndarray, i: int) -> Any:
    value = np.asarray(y)[i] if np.ndim(y) == 1 else None
    return value.item() if hasattr(value, "item") else value


def run(
    competition: Competition,
    data_dir: Path,
    data_cfg: DataConfig,
    out: Path,
    *,
    n_folds: int = 5,
    seed: int = 42,
    top_features: int = 15,
    top_rows: int = 20,
) -> dict:
    """Cross-validate the adversarial classifier on the contest's data and write ``scores.csv`` and
    ``report.json`` into ``out``; return the report."""
    if n_folds < 2:
        raise UserError(f"--folds must be at least 2, got {n_folds}")
    started = time.perf_counter()
    train = competition.load_train(data_dir, data_cfg)
    test = competition.load_test(data_dir, data_cfg)
    if test is None:
        raise UserError(
            f"no test file in {data_dir}: adversarial validation compares the training rows with the test rows"
        )
    n_train, n_test = len(train.ids), len(test.ids)
    features = competition.adversarial_features(train, test)
    if features.X.shape[0] != n_train + n_test:
        raise RuntimeError(
            f"{type(competition).__name__}.adversarial_features gave {features.X.shape[0]} rows for "
            f"{n_train} training + {n_test} test rows"
        )
    result = cross_validate(features, n_train, n_folds, seed)
    train_score, test_score = result.score[:n_train], result.score[n_train:]
    most = np.argsort(-train_score, kind="stable")[:top_rows]
    report = {
        "competition": competition.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_state(),
        "data_dir": str(data_dir),
        "data": to_dict(data_cfg),
        "inputs": {"train": fingerprints(train.sources), "test": fingerprints(test.sources)},
        "n_train": n_train,
        "n_test": n_test,
        "n_folds": n_folds,
        "seed": seed,
        "features_used": features.description or f"{len(features.names)} features",
        "model": MODELS[features.model],
        "features_note": features.note,
        "auc": round(result.auc, 5),
        "auc_folds": [round(a, 5) for a in result.fold_aucs],
        "auc_std": round(float(np.std(result.fold_aucs)), 5),
        "verdict": verdict(result.auc),
        "mean_score": {
            "train": round(float(train_score.mean()), 5),
            "test": round(float(test_score.mean()), 5),
        },
        "features": feature_table(features, result, n_train, top_features),
        "most_test_like": [
            {"id": str(train.ids[i]), "label": _label(train.y, i), "score": round(float(train_score[i]), 5)}
            for i in most
        ],
        "seconds": round(time.perf_counter() - started, 2),
    }
    scores = pd.DataFrame(
        {
            "id": np.r_[np.asarray(train.ids).astype(str), np.asarray(test.ids).astype(str)],
            "set": np.r_[np.full(n_train, "train"), np.full(n_test, "test")],
            "fold": result.fold,
            "score": result.score,
        }
    )
    AdversarialStore(out).write(scores, report)
    return report


def format_report(report: dict, path: Path | None = None) -> str:
    """The report as printed by the ``adversarial`` verb."""
    folds = " ".join(f"{a:.3f}" for a in report["auc_folds"])
    lines = [
        f"adversarial validation of {report['competition']}: {report['n_train']} training vs {report['n_test']} "
        f"test rows, {report['n_folds']} folds",
        f"features: {report['features_used']}; model: {report['model']}",
        f"AUC {report['auc']:.3f} +/- {report['auc_std']:.3f} (folds: {folds})",
        f"-> {report['verdict']}",
        f"mean test-likeness: training rows {report['mean_score']['train']:.3f}, "
        f"test rows {report['mean_score']['test']:.3f}",
        "",
        "features that separate them most (train/test: the feature's mean"
        + (f"; {report['features_note']}" if report.get("features_note") else "")
        + "; auc_alone > 0.5: larger in test):",
    ]
    table = pd.DataFrame(report["features"])
    if len(table):
        table = table[["feature", "weight", "more_in", "train", "test", "auc_alone"]]
        lines.append(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    lines += ["", "most test-like training rows (score: the classifier's out-of-fold probability of 'test'):"]
    rows = pd.DataFrame(report["most_test_like"])
    if len(rows):
        lines.append(rows.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if path is not None:
        lines += ["", f"written: {path / AdversarialStore.SCORES} and {path / AdversarialStore.REPORT}"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ folds
def default_dir(competition: Competition, data_cfg: DataConfig | None = None) -> Path:
    given = getattr(data_cfg, "adversarial_dir", None)
    return Path(given) if given else Path("runs") / competition.name / "adversarial"


def holdout_by_score(
    score: np.ndarray, strata: np.ndarray, share: float, groups: np.ndarray | None = None
) -> np.ndarray:
    """Fold 0 for the ``share`` highest-scoring rows of each stratum (at least one row of a stratum with two or
    more, never all of them), -1 (train-only) for the rest; a group with a row in the holdout goes there whole."""
    score, strata = np.asarray(score, dtype=np.float64), np.asarray(strata).astype(str)
    folds = np.full(len(score), -1, dtype=np.int64)
    for value in np.unique(strata):
        idx = np.flatnonzero(strata == value)
        k = min(max(int(round(share * len(idx))), 1), len(idx) - 1) if len(idx) >= 2 else 0
        folds[idx[np.argsort(-score[idx], kind="stable")[:k]]] = 0
    if groups is not None:
        groups = np.asarray(groups)
        folds[np.isin(groups, groups[folds == 0])] = 0
        for value in np.unique(
            strata
        ):  # whole groups may have taken a stratum's last training rows: give back
            idx = np.flatnonzero(strata == value)
            if len(idx) >= 2 and (folds[idx] == 0).all():
                folds[np.isin(groups, groups[idx[np.argmin(score[idx])]])] = -1
        if len(folds) and not (folds == 0).any():
            raise UserError(
                "the adversarial holdout is empty: groups of identical rows span every class's holdout rows; "
                "raise holdout_share"
            )
    return folds


def holdout_folds(
    competition: Competition, data: TrainData, test: TestData | None, data_cfg: DataConfig
) -> TrainData:
    """``data`` with the adversarial holdout as its predefined folds (``folds_from=adversarial``); refuses a
    predefined split, and scores that are missing or were made from other data."""
    where = default_dir(competition, data_cfg)
    if data.folds is not None:
        defaults = to_dict(type(data_cfg)())
        set_here = {k: v for k, v in to_dict(data_cfg).items() if v != defaults.get(k) and k not in _OWN_KEYS}
        because = f" (set by {', '.join(f'{k}={v!r}' for k, v in set_here.items())})" if set_here else ""
        raise UserError(
            f"folds_from=adversarial chooses the validation rows itself and cannot be combined with the contest's "
            f"predefined split{because}; drop one of them"
        )
    store = AdversarialStore(where)
    report = store.read_report()
    rerun = f"run `make adversarial COMP={competition.name}` (python -m competitions.{competition.name} adversarial)"
    if report is None:
        raise UserError(
            f"folds_from=adversarial needs adversarial scores, and {where} has none; {rerun} first"
        )
    recorded = report.get("inputs") or {}
    stale = changed(recorded.get("train") or {}, fingerprints(data.sources))
    stale += changed(recorded.get("test") or {}, fingerprints(test.sources) if test is not None else {})
    if stale:
        raise UserError(
            f"the adversarial scores in {where} were made from other data ({', '.join(sorted(set(stale)))} "
            f"differ); {rerun} again"
        )
    scores = store.read_scores()
    scores = scores[scores["set"] == "train"].set_index("id")["score"]
    ids = pd.Index(np.asarray(data.ids).astype(str))
    missing = ids.difference(scores.index)
    if len(missing) or len(scores) != len(ids):
        raise UserError(
            f"the adversarial scores in {where} do not cover this data's rows (e.g. id {missing[0] if len(missing) else '?'}); "
            f"{rerun} again"
        )
    folds = holdout_by_score(scores.reindex(ids).to_numpy(), data.strata, data_cfg.holdout_share, data.groups)
    return replace(data, folds=folds)


_OWN_KEYS = {"folds_from", "holdout_share", "adversarial_dir", "test_file"}


def describe_holdout(data: TrainData, share: float) -> str:
    n_valid = int((data.folds == 0).sum())
    return (
        f"folds_from=adversarial: one holdout fold of {n_valid} rows (the {share:.0%} most test-like of each class), "
        f"{len(data.folds) - n_valid} rows train-only"
    )


# ------------------------------------------------------------------------------------------------ CLI verb
def add_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    p.add_argument(
        "--data-dir", help=f"contest files (default data/{competition.name}, or $DATA_DIR via make)"
    )
    p.add_argument(
        "--out", help=f"where the scores and report go (default runs/{competition.name}/adversarial)"
    )
    p.add_argument("--folds", type=int, default=5, help="folds of the adversarial classifier (default 5)")
    p.add_argument("--seed", type=int, default=42, help="seed of its folds (default 42)")
    p.add_argument("--top", type=int, default=15, help="features to report (default 15)")
    p.add_argument("--rows", type=int, default=20, help="most test-like training rows to report (default 20)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a data key, e.g. test_file=test_b.csv",
    )


def cmd(competition: Competition, args) -> int:
    from common.cli import data_dir_of

    data_cfg = build_tree({"data": competition.data_config}, parse_overrides(args.set), source="data")["data"]
    out = Path(args.out) if args.out else default_dir(competition, data_cfg)
    report = run(
        competition,
        data_dir_of(competition, args),
        data_cfg,
        out,
        n_folds=args.folds,
        seed=args.seed,
        top_features=args.top,
        top_rows=args.rows,
    )
    print(format_report(report, out), flush=True)
    return 0

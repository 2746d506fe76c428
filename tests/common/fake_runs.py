"""Fake contests and fake run directories, written through the run store (:mod:`common.store`) as ``common/cv.py``
leaves them, so the leaderboard, blend and notebook tests need neither real contest's code nor any training.

- ``FakeNews``: ``train.csv`` (id, label) / ``test.csv`` (id); probabilities ``(n, n_classes)``; macro-F1.
- ``FakeStreet``: ``train.csv`` (id, code) + ``images/<id>.png`` / ``test.csv``; probabilities ``(n, 4, 11)``
  (class 10 = blank); whole-string accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from common.competition import Competition, DataConfig, TestData, TrainData
from common.errors import UserError
from common.fingerprint import fingerprints
from common.metrics import METRICS
from common.store import RunStore, new_manifest

N_CLASSES = 4
MAX_CHARS = 4
BLANK = 10


class FakeNews(Competition):
    name = "fake_news"
    metric = METRICS["macro_f1"]
    models_module = "tests.common.fake_runs"

    def load_train(self, data_dir: Path, data: DataConfig | None = None) -> TrainData:
        path = Path(data_dir) / "train.csv"
        frame = pd.read_csv(path, dtype={"id": str})
        y = frame["label"].to_numpy()
        return TrainData(
            X=frame["id"].to_numpy(), y=y, ids=frame["id"].to_numpy(str), strata=y, sources=[path]
        )

    def load_test(self, data_dir: Path, data: DataConfig | None = None) -> TestData | None:
        path = Path(data_dir) / ((data or DataConfig()).test_file or "test.csv")
        if not path.is_file():
            return None
        frame = pd.read_csv(path, dtype={"id": str})
        return TestData(X=frame["id"].to_numpy(), ids=frame["id"].to_numpy(str), sources=[path])

    def predictions(self, proba) -> np.ndarray:
        return np.asarray(proba).argmax(1)

    def submission_frame(self, test: TestData, proba) -> pd.DataFrame:
        return pd.DataFrame({"label": self.predictions(proba).astype(np.int64)})

    def check_submission(self, frame: pd.DataFrame, test: TestData) -> None:
        if list(frame.columns) != ["label"] or len(frame) != len(test.ids):
            raise UserError(f"bad submission: columns {list(frame.columns)}, {len(frame)} rows")


def decode(proba: np.ndarray) -> np.ndarray:
    """Digits up to the first blank position."""
    out = []
    for row in np.asarray(proba).argmax(-1):
        s = ""
        for c in row:
            if c == BLANK:
                break
            s += str(int(c))
        out.append(s)
    return np.asarray(out, dtype=object)


class FakeStreet(Competition):
    name = "fake_street"
    metric = METRICS["string_accuracy"]
    models_module = "tests.common.fake_runs"

    def load_train(self, data_dir: Path, data: DataConfig | None = None) -> TrainData:
        path = Path(data_dir) / "train.csv"
        frame = pd.read_csv(path, dtype={"id": str, "code": str})
        paths = [str(Path(data_dir) / "images" / f"{i}.png") for i in frame["id"]]
        y = frame["code"].to_numpy(dtype=object)
        strata = np.array([len(c) for c in y])
        return TrainData(X=paths, y=y, ids=frame["id"].to_numpy(str), strata=strata, sources=[path])

    def load_test(self, data_dir: Path, data: DataConfig | None = None) -> TestData | None:
        path = Path(data_dir) / "test.csv"
        if not path.is_file():
            return None
        frame = pd.read_csv(path, dtype={"id": str})
        return TestData(X=frame["id"].tolist(), ids=frame["id"].to_numpy(str), sources=[path])

    def predictions(self, proba) -> np.ndarray:
        return decode(proba)

    def submission_frame(self, test: TestData, proba) -> pd.DataFrame:
        return pd.DataFrame({"file_name": [f"{i}.png" for i in test.ids], "file_code": decode(proba)})

    def check_submission(self, frame: pd.DataFrame, test: TestData) -> None:
        if list(frame.columns) != ["file_name", "file_code"] or len(frame) != len(test.ids):
            raise UserError(f"bad submission: columns {list(frame.columns)}, {len(frame)} rows")


# ------------------------------------------------------------------------------------------------- data
def write_news_data(data_dir: Path, n: int = 300, n_test: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.choice(N_CLASSES, size=n, p=[0.4, 0.3, 0.2, 0.1])
    data_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": [f"n{i:04d}" for i in range(n)], "label": y}).to_csv(
        data_dir / "train.csv", index=False
    )
    pd.DataFrame({"id": [f"t{i:04d}" for i in range(n_test)]}).to_csv(data_dir / "test.csv", index=False)
    return y


def write_street_data(data_dir: Path, n: int = 120, n_test: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = np.array(
        ["".join(str(d) for d in rng.integers(0, 10, size=rng.integers(1, MAX_CHARS + 1))) for _ in range(n)],
        dtype=object,
    )
    ids = [f"s{i:04d}" for i in range(n)]
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    for i, code in zip(ids, codes, strict=True):
        pixels = rng.integers(0, 255, size=(16, 8 * len(code), 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data_dir / "images" / f"{i}.png")
    pd.DataFrame({"id": ids, "code": codes}).to_csv(data_dir / "train.csv", index=False)
    pd.DataFrame({"id": [f"q{i:04d}" for i in range(n_test)]}).to_csv(data_dir / "test.csv", index=False)
    return codes


def write_folds(
    path: Path, ids: np.ndarray, strata: np.ndarray, n_folds: int = 3, seed: int = 0
) -> np.ndarray:
    folds = np.random.default_rng(seed).permutation(np.arange(len(ids)) % n_folds)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": ids, "label": np.asarray(strata).astype(str), "fold": folds}).to_csv(
        path, index=False
    )
    return folds


# ------------------------------------------------------------------------------------------------- probabilities
def noisy_news_proba(y: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    logits = rng.normal(0, noise, size=(len(y), N_CLASSES))
    logits[np.arange(len(y)), y] += 1.0
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def encode_codes(codes) -> np.ndarray:
    target = np.full((len(codes), MAX_CHARS), BLANK)
    for i, code in enumerate(codes):
        target[i, : len(code)] = [int(c) for c in code]
    return target


def noisy_street_proba(codes, noise: float, rng: np.random.Generator) -> np.ndarray:
    target = encode_codes(codes)
    logits = rng.normal(0, noise, size=(len(codes), MAX_CHARS, BLANK + 1))
    np.put_along_axis(logits, target[..., None], np.take_along_axis(logits, target[..., None], -1) + 2.0, -1)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------------------------------------- runs
def write_run(
    run_dir: Path,
    competition: Competition,
    model: str,
    y,
    ids: np.ndarray,
    folds: np.ndarray,
    folds_file: Path,
    data_dir: Path,
    oof: np.ndarray,
    test: np.ndarray | None,
    *,
    complete_folds: int | None = None,
    params: dict | None = None,
    epochs: int = 0,
) -> Path:
    """A run directory as ``common/cv.py`` leaves it; ``complete_folds=k`` stops after k folds (no merge)."""
    n_folds = int(folds.max()) + 1
    config = {
        "competition": competition.name,
        "model": model,
        "n_folds": n_folds,
        "seed": 0,
        "folds_file": str(folds_file),
        "data_dir": str(data_dir),
        "data": {"test_file": None},
        "params": params or {"lr": 0.1},
    }
    store = RunStore(run_dir)
    store.prepare()
    store.write_config(config)
    inputs = {
        "train": fingerprints([Path(data_dir) / "train.csv"]),
        "test": fingerprints([Path(data_dir) / "test.csv"]),
    }
    store.write_manifest(new_manifest({"folds": 0}, inputs, str(folds_file), "cpu"))
    done = n_folds if complete_folds is None else complete_folds
    fold_scores = []
    for k in range(done):
        rows = np.flatnonzero(folds == k)
        d = store.fold_dir(k)
        d.mkdir(exist_ok=True)
        if epochs:
            with open(d / "log.jsonl", "w") as fh:
                for e in range(epochs):
                    record = {"epoch": e, "train_loss": 1.0 / (e + 1), "valid_loss": 1.2 / (e + 1)}
                    record.update(valid_score=0.5 + 0.1 * e, lr=0.01, seconds=1.0, items_per_s=10.0)
                    fh.write(json.dumps(record) + "\n")
        score = competition.score(np.asarray(y)[rows], oof[rows])
        fold_scores.append(score)
        metrics = {"fold": k, "score": score, "metric": competition.metric.name, "seconds": 1.5}
        metrics.update(n_train=int(len(ids) - len(rows)), n_valid=int(len(rows)))
        arrays = {"oof.npy": oof[rows], "oof_ids.npy": ids[rows]}
        if test is not None:
            arrays["test.npy"] = test
        store.save_fold(k, None, arrays, metrics)
    if done < n_folds:
        return run_dir
    cv = {"score": competition.score(y, oof), "metric": competition.metric.name, "fold_scores": fold_scores}
    cv.update(n_folds=n_folds, seconds=1.5 * n_folds, folds_file=str(folds_file), model=model)
    store.write_merged(oof, ids, test, cv)
    return run_dir


def make_fake_runs(root: Path, seed: int = 0) -> dict:
    """Data and runs of both fake contests under ``root`` (``data/``, ``runs/``, ``submissions/``)."""
    rng = np.random.default_rng(seed)
    out = {"root": root, "runs_root": root / "runs", "news": {}, "street": {}}
    news, street = FakeNews(), FakeStreet()

    data = root / "data" / news.name
    y = write_news_data(data, seed=seed)
    ids = np.array([f"n{i:04d}" for i in range(len(y))])
    folds_file = root / "runs" / news.name / "folds" / "folds-k3.csv"
    folds = write_folds(folds_file, ids, y)
    runs = {}
    for model, noise, extra in (("linear", 0.9, {}), ("textcnn", 1.1, {"epochs": 3}), ("lstm", 1.3, {})):
        oof = noisy_news_proba(y, noise, rng)
        test = noisy_news_proba(rng.integers(0, N_CLASSES, 40), noise, rng)
        runs[model] = write_run(
            root / "runs" / news.name / model, news, model, y, ids, folds, folds_file, data, oof, test,
            params={"lr": 0.1, **extra}, epochs=extra.get("epochs", 0),
        )  # fmt: skip
    runs["partial"] = write_run(
        root / "runs" / news.name / "partial", news, "linear", y, ids, folds, folds_file, data,
        noisy_news_proba(y, 0.5, rng), None, complete_folds=1, params={"lr": 0.5},
    )  # fmt: skip
    out["news"] = {"competition": news, "data_dir": data, "y": y, "ids": ids, "folds": folds, "runs": runs}

    data = root / "data" / street.name
    codes = write_street_data(data, seed=seed)
    ids = np.array([f"s{i:04d}" for i in range(len(codes))])
    folds_file = root / "runs" / street.name / "folds" / "folds-k3.csv"
    folds = write_folds(folds_file, ids, [len(c) for c in codes])
    runs = {}
    for model, noise in (("cnn", 1.2), ("resnet", 1.0)):
        oof = noisy_street_proba(codes, noise, rng)
        test = noisy_street_proba(["1"] * 20, noise, rng)
        runs[model] = write_run(
            root / "runs" / street.name / model, street, model, codes, ids, folds, folds_file, data, oof, test,
            epochs=2,
        )  # fmt: skip
    out["street"] = {
        "competition": street,
        "data_dir": data,
        "y": codes,
        "ids": ids,
        "folds": folds,
        "runs": runs,
    }
    return out


#: fake public-score gaps (LB - CV) per fake news run: ``lstm``'s is out of line with the other two
FAKE_GAPS = {"linear": -0.010, "textcnn": -0.012, "lstm": 0.050}


def score_fake_submissions(fake: dict, submissions_root: Path, gaps: dict | None = None, board: str = "a"):
    """Write an archived submission of each complete fake news run through the run store (so the ledger records
    it), then record a fake public score ``CV + gap`` for it on ``board``; returns the ledger."""
    from common.ledger import Ledger
    from common.store import Run

    news = fake["news"]["competition"]
    test = news.load_test(fake["news"]["data_dir"])
    ledger = Ledger(submissions_root, news.name)
    for name, gap in (gaps or FAKE_GAPS).items():
        run = Run(fake["news"]["runs"][name])
        _, archived = run.write_submission(news, test, run.test(), archive_root=submissions_root)
        ledger.record_score(archived, run.score + gap, board)
    return ledger

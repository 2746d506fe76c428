"""The street character recognition contest as :class:`~common.competition.Competition` sees it.

Training rows are ``mchar_train`` then ``mchar_val`` (ids ``mchar_train/000000.png``...), labels are digit strings.
The data config's ``split="kfold"`` (default) pools both and lets the shared code stratify k folds on the number of
digits; ``split="official"`` keeps the official validation images as the single holdout (fold 0) and trains on
``mchar_train`` only (fold -1). Images with identical bytes share a group, so k-fold keeps them in one fold.
``X`` also carries each labelled image's digit boxes (the detector trains on them; the other models ignore them).
Probabilities are (n, max_chars, 11); the submission is ``file_name,file_code`` with one row per test image in name
order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from common.competition import Competition, DataConfig, TestData, TrainData
from common.errors import UserError
from common.fingerprint import file_digests
from common.metrics import METRICS
from competitions.street_char_rec import labels as codec
from competitions.street_char_rec.cache import default_cache_dir
from competitions.street_char_rec.dataset import StreetImages
from competitions.street_char_rec.reader import (
    TEST_DIRS,
    TRAIN_DIR,
    TRAIN_JSON,
    VAL_DIR,
    VAL_JSON,
    read_labelled,
    read_unlabelled,
)

COLUMNS = ["file_name", "file_code"]


@dataclass
class StreetData(DataConfig):
    """The street contest's data choices."""

    #: kfold: pool mchar_train and mchar_val and k-fold them; official: mchar_val is the single holdout
    split: Literal["kfold", "official"] = "kfold"
    #: where decoded images are cached (None: <data_dir>/.cache, or runs/street_char_rec/cache if read-only)
    cache_dir: str | None = None


class StreetCompetition(Competition):
    name = "street_char_rec"
    metric = METRICS["string_accuracy"]
    models_module = "competitions.street_char_rec.models"
    data_config = StreetData

    def _cache_dir(self, data_dir: Path, data: StreetData) -> Path:
        return Path(data.cache_dir) if data.cache_dir else default_cache_dir(data_dir)

    def load_train(self, data_dir: Path, data: StreetData | None = None) -> TrainData:
        data = data or StreetData()
        data_dir = Path(data_dir)
        parts = [read_labelled(data_dir, TRAIN_DIR, TRAIN_JSON)]
        has_val = (data_dir / VAL_DIR).exists() or (data_dir / VAL_JSON).exists()
        if has_val:
            parts.append(read_labelled(data_dir, VAL_DIR, VAL_JSON))
        elif data.split == "official":
            raise UserError(f"split=official needs {data_dir / VAL_DIR} and {data_dir / VAL_JSON}")
        paths = np.concatenate([np.array([str(p) for p in part.paths]) for part in parts])
        ids = np.concatenate([np.char.add(f"{part.folder.name}/", part.names.astype(str)) for part in parts])
        y = np.concatenate([part.labels for part in parts]).astype(str)
        folds = None
        if data.split == "official":
            folds = np.r_[np.full(len(parts[0].names), -1), np.zeros(len(parts[1].names))].astype(np.int64)
        boxes = tuple(b for part in parts for b in part.boxes)
        X = StreetImages(paths, self._cache_dir(data_dir, data), "labelled", boxes=boxes)
        groups = np.unique(file_digests(paths), return_inverse=True)[1] if data.split == "kfold" else None
        sources = [data_dir / TRAIN_DIR, data_dir / TRAIN_JSON]
        if has_val:
            sources += [data_dir / VAL_DIR, data_dir / VAL_JSON]
        return TrainData(
            X=X, y=y, ids=ids, strata=codec.n_digits(y), folds=folds, groups=groups, sources=sources
        )

    def load_test(self, data_dir: Path, data: StreetData | None = None) -> TestData | None:
        """``data.test_file``: a test folder's name in ``data_dir`` or a path; default the first of
        mchar_test_a/_b present."""
        data = data or StreetData()
        data_dir = Path(data_dir)
        if data.test_file is not None:
            folder = Path(data.test_file) if Path(data.test_file).is_dir() else data_dir / data.test_file
        else:
            folder = next((data_dir / d for d in TEST_DIRS if (data_dir / d).exists()), None)
            if folder is None:
                return None
        images = read_unlabelled(folder)
        X = StreetImages(
            [str(p) for p in images.paths], self._cache_dir(data_dir, data), folder.name, on_error="warn"
        )
        return TestData(X=X, ids=images.names.astype(str), sources=[folder])

    def adversarial_features(self, train: TrainData, test: TestData):
        """Per image: size, aspect, brightness, contrast, saturation, warmth, sharpness and bytes per pixel (of the
        original files, not the resized cache), for gradient boosting."""
        from common.adversarial import image_features

        paths = [*train.X.paths[train.X.rows], *test.X.paths[test.X.rows]]
        return image_features(paths)

    def predictions(self, proba: np.ndarray) -> np.ndarray:
        return codec.decode_scores(proba)

    def join_x(self, train_X: StreetImages, test_X: StreetImages) -> StreetImages:
        """One image set of the training then the test images, cached once as ``labelled+<test folder>``. A test
        image that cannot be decoded is blank there too, as in the test set's own cache (the training images were
        checked when their run was trained, and their content is fingerprinted)."""
        paths = np.concatenate([train_X.paths[train_X.rows], test_X.paths[test_X.rows]])
        return StreetImages(paths, train_X.cache_dir, f"{train_X.name}+{test_X.name}", on_error="warn")

    def pseudo_labels(self, proba: np.ndarray, classes: list | None) -> tuple[np.ndarray, np.ndarray]:
        """The decoded string of each image (as the submission decodes it) and the probability of exactly that
        target: the product over positions of the probability of its digit, then of blank after its last digit.
        That is the whole string's probability if the positions were independent, so a threshold means the same as
        for a single label (every position at 0.95 would let a 6-position string through at 0.74)."""
        proba = np.asarray(proba)
        labels = codec.decode_scores(proba)
        target = codec.encode(labels, max_chars=proba.shape[1])
        confidence = np.take_along_axis(proba, target[..., None], axis=-1)[..., 0].prod(axis=1)
        return labels, confidence

    def score(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        return self.metric(np.asarray(y_true).astype(str), self.predictions(proba))

    def submission_frame(self, test: TestData, proba: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {"file_name": np.asarray(test.ids).astype(str), "file_code": self.predictions(proba)}
        )

    def check_submission(self, frame: pd.DataFrame, test: TestData) -> None:
        if list(frame.columns) != COLUMNS:
            raise UserError(f"submission columns are {list(frame.columns)}; expected {COLUMNS}")
        if len(frame) != len(test.ids):
            raise UserError(f"submission has {len(frame)} rows; the test folder has {len(test.ids)} images")
        names = frame["file_name"].astype(str).to_numpy()
        bad = np.flatnonzero(names != np.asarray(test.ids).astype(str))
        if len(bad):
            raise UserError(
                f"submission row {bad[0] + 2} is {names[bad[0]]!r}; expected {test.ids[bad[0]]!r}"
            )
        codes = frame["file_code"].astype(str)
        bad = np.flatnonzero(~codes.str.fullmatch(r"[0-9]+").to_numpy())
        if len(bad):
            raise UserError(
                f"submission row {bad[0] + 2} has file_code {codes.iat[bad[0]]!r}; expected digits"
            )

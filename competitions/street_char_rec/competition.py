"""The street character recognition contest as :class:`~common.competition.Competition` sees it.

Training rows are ``mchar_train`` then ``mchar_val`` (ids ``mchar_train/000000.png``...), labels are digit strings.
``split="kfold"`` (default) pools both and lets the shared code stratify k folds on the number of digits;
``split="official"`` keeps the official validation images as the single holdout (fold 0) and trains on
``mchar_train`` only (fold -1). Probabilities are (n, max_chars, 11); the submission is ``file_name,file_code``
with one row per test image in name order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.competition import Competition, TestData, TrainData
from common.errors import UserError
from common.metrics import string_accuracy
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

SPLITS = ("kfold", "official")
COLUMNS = ["file_name", "file_code"]


class StreetCompetition(Competition):
    name = "street_char_rec"
    metric_name = "string_accuracy"
    models_module = "competitions.street_char_rec.models"

    def __init__(self, split: str = "kfold", cache_dir: str | Path | None = None) -> None:
        self.split = split
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def configure(self, params: dict) -> None:
        """Take the data choices out of the model params (``split``)."""
        self.split = params.get("split", self.split)

    def _cache_dir(self, data_dir: Path) -> Path:
        return self.cache_dir or default_cache_dir(data_dir)

    def load_train(self, data_dir: Path) -> TrainData:
        data_dir = Path(data_dir)
        if self.split not in SPLITS:
            raise UserError(f"split {self.split!r} is not one of {list(SPLITS)}")
        parts = [read_labelled(data_dir, TRAIN_DIR, TRAIN_JSON)]
        has_val = (data_dir / VAL_DIR).exists() or (data_dir / VAL_JSON).exists()
        if has_val:
            parts.append(read_labelled(data_dir, VAL_DIR, VAL_JSON))
        elif self.split == "official":
            raise UserError(f"split=official needs {data_dir / VAL_DIR} and {data_dir / VAL_JSON}")
        paths = np.concatenate([np.array([str(p) for p in part.paths]) for part in parts])
        ids = np.concatenate([np.char.add(f"{part.folder.name}/", part.names.astype(str)) for part in parts])
        y = np.concatenate([part.labels for part in parts]).astype(str)
        folds = None
        if self.split == "official":
            folds = np.r_[np.full(len(parts[0].names), -1), np.zeros(len(parts[1].names))].astype(np.int64)
        X = StreetImages(paths, self._cache_dir(data_dir), "labelled")
        return TrainData(X=X, y=y, ids=ids, strata=codec.n_digits(y), folds=folds)

    def load_test(self, data_dir: Path, test_file: str | None = None) -> TestData | None:
        """``test_file``: a test folder's name in ``data_dir`` or a path; default the first of mchar_test_a/_b."""
        data_dir = Path(data_dir)
        if test_file is not None:
            folder = Path(test_file) if Path(test_file).is_dir() else data_dir / test_file
        else:
            folder = next((data_dir / d for d in TEST_DIRS if (data_dir / d).exists()), None)
            if folder is None:
                return None
        images = read_unlabelled(folder)
        X = StreetImages(
            [str(p) for p in images.paths], self._cache_dir(data_dir), folder.name, on_error="warn"
        )
        return TestData(X=X, ids=images.names.astype(str))

    def score(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        return string_accuracy(np.asarray(y_true).astype(str), codec.decode_scores(proba))

    def submission_frame(self, test: TestData, proba: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {"file_name": np.asarray(test.ids).astype(str), "file_code": codec.decode_scores(proba)}
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

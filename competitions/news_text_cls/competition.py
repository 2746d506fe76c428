"""The news text classification contest as :class:`~common.competition.Competition` sees it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.competition import Competition, DataConfig, TestData, TrainData
from common.errors import UserError
from common.metrics import METRICS
from competitions.news_text_cls.data import TEST_FILES, TRAIN_FILE, Corpus, read_test, read_train


class NewsCompetition(Competition):
    """Labels are ``0..C-1`` (see :mod:`.data`), so probability column ``j`` is label ``j``.

    The training corpus carries the test file's text as unlabelled companion text: models may fit unsupervised
    parts (a TF-IDF vocabulary, word2vec vectors) on it; no label of any validation or test row is ever used.
    Documents with exactly the same text share a group, so k-fold keeps them in one fold."""

    name = "news_text_cls"
    metric = METRICS["macro_f1"]
    models_module = "competitions.news_text_cls.models"
    data_config = DataConfig

    def load_train(self, data_dir: Path, data: DataConfig | None = None) -> TrainData:
        data = data or DataConfig()
        data_dir = Path(data_dir)
        corpus, labels = read_train(data_dir / TRAIN_FILE)
        test_path = self._test_path(data_dir, data.test_file)
        if test_path is not None:
            corpus = corpus.with_unlabelled(read_test(test_path))
        ids = np.arange(len(labels)).astype(str)
        groups, _ = pd.factorize(corpus.texts)
        return TrainData(
            X=corpus, y=labels, ids=ids, strata=labels, groups=groups, sources=[data_dir / TRAIN_FILE]
        )

    def load_test(self, data_dir: Path, data: DataConfig | None = None) -> TestData | None:
        path = self._test_path(Path(data_dir), (data or DataConfig()).test_file)
        if path is None:
            return None
        corpus = read_test(path)
        return TestData(X=corpus, ids=np.arange(len(corpus)).astype(str), sources=[path])

    @staticmethod
    def _test_path(data_dir: Path, test_file: str | None) -> Path | None:
        """``test_file`` (a name in ``data_dir`` or a path), else the first of test_a.csv, test_b.csv present."""
        if test_file is not None:
            path = Path(test_file)
            path = path if path.is_file() else data_dir / test_file
            if not path.is_file():
                raise UserError(f"test file not found: {test_file} (looked in . and {data_dir})")
            return path
        for name in TEST_FILES:
            if (data_dir / name).is_file():
                return data_dir / name
        return None

    def adversarial_features(self, train: TrainData, test: TestData):
        """TF-IDF over id uni/bi-grams plus each document's length, for a logistic regression."""
        from common.adversarial import text_features

        return text_features(train.X.texts, test.X.texts, token_pattern=r"\S+", ngram_max=2)

    def predictions(self, proba: np.ndarray) -> np.ndarray:
        return np.asarray(proba).argmax(axis=1)

    def join_x(self, train_X: Corpus, test_X: Corpus) -> Corpus:
        """One corpus of the training then the test documents. It carries no separate unlabelled text: the test
        documents are in it, so TF-IDF's vocabulary is fitted on the same train + test text as the run whose
        predictions gave the pseudo labels."""
        return Corpus(np.concatenate([train_X.texts, test_X.texts]), f"{train_X.source} + {test_X.source}")

    def submission_frame(self, test: TestData, proba: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"label": self.predictions(proba).astype(np.int64)})

    def check_submission(self, frame: pd.DataFrame, test: TestData) -> None:
        if list(frame.columns) != ["label"]:
            raise UserError(f"submission columns are {list(frame.columns)}; expected ['label']")
        if len(frame) != len(test.ids):
            raise UserError(f"submission has {len(frame)} rows; the test file has {len(test.ids)}")
        if not pd.api.types.is_integer_dtype(frame["label"]):
            raise UserError(f"submission labels must be integers, got dtype {frame['label'].dtype}")
        if len(frame) and frame["label"].min() < 0:
            raise UserError("submission labels must be non-negative integers")

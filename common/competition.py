"""What a contest tells the shared code: how to read its files, score probabilities and shape a submission.

Each ``competitions/<name>/`` defines one subclass; ``common.cv``, ``common.tuning``, ``common.blend`` and
``common.cli`` work through this interface only, so they never know which contest they serve. Data choices (which
test file, which validation split) are the contest's :class:`DataConfig` (the ``data`` section of a run's config),
passed explicitly to the readers; they are never model params.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from common.config import ConfigBase
from common.errors import UserError
from common.metrics import Metric

if TYPE_CHECKING:
    from common.adversarial import AdversarialFeatures


@dataclass
class DataConfig(ConfigBase):
    """Data keys every contest has; a contest's own data config inherits it."""

    #: keys that say where to read or cache, not what a run trains on: a re-run may differ in them (a changed
    #: test file re-predicts from the fold models, see ``common.cli.reconcile``). ``cache_dir`` is a contest's own
    #: key (street's decoded-image cache); a contest with other such keys extends this set in its subclass
    RUNTIME_KEYS: ClassVar[frozenset[str]] = frozenset({"test_file", "cache_dir"})

    #: the test file or folder to predict (a name in the data directory or a path); None: the contest's default
    test_file: str | None = None
    #: kfold: stratified k folds; adversarial: one holdout of the most test-like rows (``holdout_share`` of each
    #: class, by the scores of ``make adversarial``), every other row train-only (see common/adversarial.py)
    folds_from: Literal["kfold", "adversarial"] = "kfold"
    #: folds_from=adversarial: the share of each class's rows in the holdout
    holdout_share: Annotated[float, Field(gt=0, lt=1)] = 0.2
    #: folds_from=adversarial: where the adversarial scores are (None: runs/<competition>/adversarial)
    adversarial_dir: str | None = None


@dataclass
class TrainData:
    """Labelled rows. ``X`` is anything :func:`common.cv.take` can index by an integer array (numpy array, list,
    DataFrame, or an object with ``__getitem__`` on index arrays); ``y`` holds the targets as the models expect them;
    ``ids`` are unique strings; ``strata`` is what folds are stratified on (often ``y``). ``folds``, when given,
    is a predefined fold column (e.g. an official validation split: 0 for validation rows, -1 for rows that are
    only ever trained on) used instead of stratified k-fold. ``groups``, when given, marks rows that must share a
    fold (exact duplicates). ``sources`` are the files and folders the rows were read from (the run records their
    content fingerprints)."""

    X: Any
    y: np.ndarray
    ids: np.ndarray
    strata: np.ndarray
    folds: np.ndarray | None = None
    groups: np.ndarray | None = None
    sources: list[Path] = field(default_factory=list)


@dataclass
class TestData:
    X: Any
    ids: np.ndarray
    sources: list[Path] = field(default_factory=list)


class Competition(ABC):
    #: short name, also the folder under ``runs/``, ``data/`` and ``submissions/``
    name: str
    #: the contest metric (its direction included), from :data:`common.metrics.METRICS`
    metric: Metric
    #: the module whose import registers this contest's models
    models_module: str
    #: the data section of a run's config
    data_config: type[DataConfig] = DataConfig

    @property
    def metric_name(self) -> str:
        return self.metric.name

    @property
    def greater_is_better(self) -> bool:
        return self.metric.greater_is_better

    def import_models(self) -> None:
        importlib.import_module(self.models_module)

    def default_data_dir(self) -> Path:
        return Path("data") / self.name

    @abstractmethod
    def load_train(self, data_dir: Path, data: DataConfig | None = None) -> TrainData:
        """Read the labelled files (``data``: the data config, default its defaults); bad input raises
        :class:`common.errors.UserError` naming file and line."""

    @abstractmethod
    def load_test(self, data_dir: Path, data: DataConfig | None = None) -> TestData | None:
        """Read the unlabelled test files (``data.test_file`` or the contest's default); ``None`` when absent."""

    @abstractmethod
    def predictions(self, proba: np.ndarray) -> np.ndarray:
        """What the submission holds (and the metric scores when it scores labels), from probabilities."""

    def score(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        """The contest metric from targets and predicted probabilities (as returned by ``predict_proba``)."""
        scored = proba if self.metric.scores == "proba" else self.predictions(proba)
        return self.metric(y_true, scored)

    @abstractmethod
    def submission_frame(self, test: TestData, proba: np.ndarray) -> pd.DataFrame:
        """The submission as the contest wants it, from test probabilities."""

    @abstractmethod
    def check_submission(self, frame: pd.DataFrame, test: TestData) -> None:
        """Raise :class:`common.errors.UserError` if ``frame`` is not a valid submission for ``test``."""

    # ------------------------------------------------------------------ pseudo-labelling (common.pseudo)
    def join_x(self, train_X: Any, test_X: Any) -> Any:
        """``X`` of the training rows followed by the test rows, so a model can train on both (pseudo-labelling
        indexes it with :func:`common.cv.take`). The default joins numpy arrays, DataFrames and lists; a contest
        whose ``X`` is a type of its own (a corpus, an image set) overrides it."""
        if hasattr(train_X, "iloc"):
            return pd.concat([train_X, test_X], ignore_index=True)
        if isinstance(train_X, list | tuple):
            return [*train_X, *test_X]
        if isinstance(train_X, np.ndarray):
            return np.concatenate([train_X, np.asarray(test_X)])
        raise UserError(
            f"{self.name}: cannot join training and test rows of type {type(train_X).__name__} for "
            "pseudo-labelling; the contest's Competition.join_x must say how"
        )

    def pseudo_labels(self, proba: np.ndarray, classes: list | None) -> tuple[np.ndarray, np.ndarray]:
        """Targets for test rows from a model's probabilities, as ``TrainData.y`` holds them, and the confidence of
        each: the probability the model gives that target. Default, ``(n, n_classes)`` probabilities: the top
        class (column ``j`` is ``classes[j]``, or ``j`` without a class list) and its probability."""
        proba = np.asarray(proba)
        if proba.ndim != 2:
            raise UserError(
                f"{self.name}: probabilities of shape {proba.shape}; the default pseudo_labels takes (n, n_classes)"
            )
        top = proba.argmax(axis=1)
        labels = np.asarray(classes)[top] if classes is not None else top
        return labels, proba.max(axis=1)

    def adversarial_features(self, train: TrainData, test: TestData) -> AdversarialFeatures:
        """What the adversarial classifier sees of each row, training rows first then test rows (see
        :mod:`common.adversarial`: ``text_features``, ``image_features``, ``table_features`` build them)."""
        raise UserError(
            f"{self.name} defines no adversarial features; implement {type(self).__name__}.adversarial_features"
        )

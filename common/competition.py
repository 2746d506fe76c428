"""What a contest tells the shared code: how to read its files, score probabilities and shape a submission.

Each ``competitions/<name>/`` defines one subclass; ``common.cv``, ``common.tuning``, ``common.blend`` and
``common.cli`` work through this interface only, so they never know which contest they serve.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class TrainData:
    """Labelled rows. ``X`` is anything :func:`common.cv.take` can index by an integer array (numpy array, list,
    DataFrame, or an object with ``__getitem__`` on index arrays); ``y`` holds the targets as the models expect them;
    ``ids`` are unique strings; ``strata`` is what folds are stratified on (often ``y``). ``folds``, when given,
    is a predefined fold column (e.g. an official validation split: 0 for validation rows, -1 for rows that are
    only ever trained on) used instead of stratified k-fold."""

    X: Any
    y: np.ndarray
    ids: np.ndarray
    strata: np.ndarray
    folds: np.ndarray | None = None


@dataclass
class TestData:
    X: Any
    ids: np.ndarray


class Competition(ABC):
    #: short name, also the folder under ``runs/``, ``data/`` and ``submissions/``
    name: str
    #: the name of the metric in :mod:`common.metrics` (reported beside every score)
    metric_name: str
    #: the module whose import registers this contest's models
    models_module: str
    greater_is_better: bool = True

    def configure(self, params: dict) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Take data choices that users pass as params (e.g. ``--set split=official``) before data is loaded."""

    def import_models(self) -> None:
        importlib.import_module(self.models_module)

    def default_data_dir(self) -> Path:
        return Path("data") / self.name

    @abstractmethod
    def load_train(self, data_dir: Path) -> TrainData:
        """Read the labelled files; bad input raises :class:`common.errors.UserError` naming file and line."""

    @abstractmethod
    def load_test(self, data_dir: Path, test_file: str | None = None) -> TestData | None:
        """Read the unlabelled test files; ``None`` when they are absent."""

    @abstractmethod
    def score(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        """The contest metric from targets and predicted probabilities (as returned by ``predict_proba``)."""

    @abstractmethod
    def submission_frame(self, test: TestData, proba: np.ndarray) -> pd.DataFrame:
        """The submission as the contest wants it, from test probabilities."""

    @abstractmethod
    def check_submission(self, frame: pd.DataFrame, test: TestData) -> None:
        """Raise :class:`common.errors.UserError` if ``frame`` is not a valid submission for ``test``."""

"""A tiny contest and two tiny models for testing ``common/`` without either real contest.

Files: ``train.csv`` (id, f0..f3, label) and ``test.csv`` (id, f0..f3). Models: ``toy_mlp`` (a TorchEstimator)
and ``toy_logreg`` (scikit-learn). Run as ``python -m tests.common.toy VERB ...`` for CLI and DDP tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import DataLoader

from common import distributed
from common.competition import Competition, DataConfig, TestData, TrainData
from common.config import ConfigBase, PositiveFloat, PositiveInt, trainer_defaults
from common.errors import UserError
from common.estimator import DeepConfig, TorchEstimator
from common.metrics import METRICS
from common.registry import register_model
from common.trainer import TrainerConfig

FEATURES = ["f0", "f1", "f2", "f3"]


def write_toy_data(
    out: Path, n_train: int = 200, n_test: int = 50, n_classes: int = 3, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.0, size=(n_classes, len(FEATURES)))
    out.mkdir(parents=True, exist_ok=True)
    for name, n, labelled in (("train.csv", n_train, True), ("test.csv", n_test, False)):
        y = rng.integers(0, n_classes, size=n)
        X = centers[y] + rng.normal(0, 1.5, size=(n, len(FEATURES)))
        frame = pd.DataFrame(X, columns=FEATURES)
        frame.insert(0, "id", [f"{name[0]}{i:05d}" for i in range(n)])
        if labelled:
            frame["label"] = y
        frame.to_csv(out / name, index=False)
    return out


class ToyCompetition(Competition):
    name = "toy"
    metric = METRICS["accuracy"]
    models_module = "tests.common.toy"

    def load_train(self, data_dir: Path, data: DataConfig | None = None) -> TrainData:
        path = Path(data_dir) / "train.csv"
        if not path.is_file():
            raise UserError(f"{path}: not found")
        frame = pd.read_csv(path)
        y = frame["label"].to_numpy()
        X = frame[FEATURES].to_numpy(np.float32)
        groups = pd.factorize(pd.Series([r.tobytes() for r in X]))[0]
        return TrainData(X=X, y=y, ids=frame["id"].to_numpy(str), strata=y, groups=groups, sources=[path])

    def load_test(self, data_dir: Path, data: DataConfig | None = None) -> TestData | None:
        path = Path(data_dir) / ((data or DataConfig()).test_file or "test.csv")
        if not path.is_file():
            return None
        frame = pd.read_csv(path)
        return TestData(X=frame[FEATURES].to_numpy(np.float32), ids=frame["id"].to_numpy(str), sources=[path])

    def adversarial_features(self, train: TrainData, test: TestData):
        from common.adversarial import table_features

        return table_features(pd.DataFrame(train.X, columns=FEATURES), pd.DataFrame(test.X, columns=FEATURES))

    def predictions(self, proba) -> np.ndarray:
        return np.asarray(proba).argmax(1)

    def submission_frame(self, test: TestData, proba) -> pd.DataFrame:
        return pd.DataFrame({"id": test.ids, "label": self.predictions(proba)})

    def check_submission(self, frame: pd.DataFrame, test: TestData) -> None:
        if list(frame.columns) != ["id", "label"] or len(frame) != len(test.ids):
            raise UserError(f"bad submission: columns {list(frame.columns)}, {len(frame)} rows")


class _MLP(nn.Module):
    def __init__(self, n_in: int, n_classes: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, n_classes)
        )

    def forward(self, batch: dict) -> dict:
        logits = self.net(batch["x"])
        out = {"logits": logits}
        if "labels" in batch:
            out["loss"] = nn.functional.cross_entropy(logits, batch["labels"])
        return out


class _Rows(torch.utils.data.Dataset):
    def __init__(self, X, y=None) -> None:
        self.X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        self.y = None if y is None else torch.as_tensor(y)

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i):
        item = {"x": self.X[i]}
        if self.y is not None:
            item["labels"] = self.y[i]
        return item


@dataclass
class ToyMLPConfig(DeepConfig):
    hidden: PositiveInt = 16
    #: under torchrun, every loader made meets a barrier first (as the street image cache does)
    sync_loader: bool = False
    trainer: TrainerConfig = trainer_defaults(epochs=4, batch_size=32, lr=0.01)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True),
            "hidden": trial.suggest_int("hidden", 4, 32),
        }


@register_model("toy_mlp", config=ToyMLPConfig)
@dataclass(eq=False, repr=False)
class ToyMLP(ToyMLPConfig, TorchEstimator):
    def _build_module(self) -> nn.Module:
        return _MLP(len(FEATURES), self.n_classes_, self.hidden)

    def _make_loader(self, X, y, train, generator):
        if self.sync_loader and distributed.is_distributed():
            distributed.init_if_needed(distributed.resolve_device(self.trainer.device))
            distributed.barrier()
        return DataLoader(
            _Rows(X, y),
            batch_size=self.trainer.batch_size,
            shuffle=train,
            generator=generator,
            num_workers=self.trainer.num_workers,
        )


@dataclass
class ToyLogRegConfig(ConfigBase):
    C: PositiveFloat = 1.0
    #: a text file holding a number that scales the features (an input besides the data, as a pretrained model)
    prior: str | None = None

    @staticmethod
    def search_space(trial) -> dict:
        return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)}


@register_model("toy_logreg", config=ToyLogRegConfig)
@dataclass(eq=False, repr=False)
class ToyLogReg(ToyLogRegConfig, ClassifierMixin, BaseEstimator):
    def input_paths(self) -> dict[str, str]:
        return {"prior": self.prior} if self.prior else {}

    def fit(self, X, y, X_valid=None, y_valid=None):
        self.scale_ = float(Path(self.prior).read_text()) if self.prior else 1.0
        self.model_ = LogisticRegression(C=self.C, max_iter=500).fit(X * self.scale_, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X * self.scale_)

    def predict(self, X):
        return self.model_.predict(X * self.scale_)


def main(argv=None) -> int:
    from common.cli import main as cli_main

    return cli_main(ToyCompetition(), argv)


if __name__ == "__main__":
    raise SystemExit(main())

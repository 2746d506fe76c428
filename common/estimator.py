"""scikit-learn shaped wrapper around the shared trainer, so deep models and sklearn models are interchangeable.

A deep model is a dataclass inheriting its config and :class:`TorchEstimator`::

    @dataclass
    class TextCNNConfig(DeepConfig):
        embed_dim: int = 128

    @register_model("textcnn", config=TextCNNConfig)
    @dataclass(eq=False, repr=False)
    class TextCNN(TextCNNConfig, TorchEstimator):
        def _build_module(self): ...                        # forward(batch) -> {"loss", "logits"}
        def _make_loader(self, X, y, train, generator): ...  # DataLoader of dict batches ("labels" when y given)

The dataclass generates ``__init__`` from the config's fields, so ``get_params``/``clone`` work and every
hyper-parameter is a typed config key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder

from common.seed import seed_everything
from common.trainer import Trainer, TrainerConfig


@dataclass
class DeepConfig:
    """Parameters every deep model accepts (the trainer's, plus data-loading ones)."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    warmup_ratio: float = 0.0
    grad_accum: int = 1
    clip_grad: float | None = 1.0
    amp: str = "auto"
    patience: int | None = None
    ema_decay: float | None = None
    #: share of the training rows held out inside ``fit`` for per-epoch scores, early stopping and pruning when
    #: no ``X_valid`` is given (0 = train on every row for a fixed number of epochs)
    valid_size: float = 0.1
    num_workers: int = 0
    device: str = "auto"
    channels_last: bool = False
    compile: bool = False
    seed: int = 42
    deterministic: bool = False
    quiet: bool = False


_TRAINER_KEYS = {f.name for f in dataclasses.fields(TrainerConfig)}


class TorchEstimator(BaseEstimator):
    """Hides :class:`common.trainer.Trainer` inside ``fit``; see the module docstring."""

    greater_is_better = True

    # ---- to implement in subclasses
    def _build_module(self) -> torch.nn.Module:
        raise NotImplementedError

    def _make_loader(self, X, y: np.ndarray | None, train: bool, generator: torch.Generator | None):
        """A DataLoader of dict batches (``"labels"`` when ``y`` is given). With ``train=False`` it yields the rows
        in ``X``'s order, or its batch sampler exposes the permutation as ``order`` (see :meth:`predict_logits`)."""
        raise NotImplementedError

    # ---- overridable defaults (single-label classification)
    def _encode_targets(self, y) -> np.ndarray:
        """Fit the target encoding on the training targets (sets ``classes_``) and return encoded targets."""
        self.label_encoder_ = LabelEncoder().fit(np.asarray(y))
        self.classes_ = self.label_encoder_.classes_
        self.n_classes_ = len(self.classes_)
        return self.label_encoder_.transform(np.asarray(y)).astype(np.int64)

    def _transform_targets(self, y) -> np.ndarray:
        """Encode validation targets with the encoding fitted on the training targets."""
        return self.label_encoder_.transform(np.asarray(y)).astype(np.int64)

    def _val_metric(self, y_true: np.ndarray, logits: np.ndarray) -> float:
        return float(np.mean(logits.argmax(-1) == y_true))

    def _proba(self, logits: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.from_numpy(logits).float(), dim=-1).numpy()

    def _stratify(self, y_encoded: np.ndarray) -> np.ndarray | None:
        """What the inner holdout is stratified on (None: random, e.g. when a class or the holdout is too small)."""
        if y_encoded.ndim != 1:
            return None
        _, counts = np.unique(y_encoded, return_counts=True)
        n_valid = int(np.ceil(self.valid_size * len(y_encoded)))
        fits = counts.min() >= 2 and len(counts) <= n_valid <= len(y_encoded) - len(counts)
        return y_encoded if fits else None

    # ---- the estimator contract
    def _trainer_config(self) -> TrainerConfig:
        params = {k: v for k, v in self.get_params().items() if k in _TRAINER_KEYS}
        params["greater_is_better"] = self.greater_is_better
        return TrainerConfig(**params)

    def fit(self, X, y, X_valid=None, y_valid=None, *, work_dir: str | Path | None = None, callbacks=()):
        from common.cv import take

        generator = seed_everything(self.seed, deterministic=self.deterministic)
        y_enc = self._encode_targets(y)
        if X_valid is None and self.valid_size and self.valid_size > 0:
            idx = np.arange(len(y_enc))
            train_idx, valid_idx = train_test_split(
                idx, test_size=self.valid_size, random_state=self.seed, stratify=self._stratify(y_enc)
            )
            X_train, y_train = take(X, np.sort(train_idx)), y_enc[np.sort(train_idx)]
            X_valid, y_valid_enc = take(X, np.sort(valid_idx)), y_enc[np.sort(valid_idx)]
        else:
            X_train, y_train = X, y_enc
            y_valid_enc = self._transform_targets(y_valid) if X_valid is not None else None
        train_loader = self._make_loader(X_train, y_train, True, generator)
        valid_loader = self._make_loader(X_valid, y_valid_enc, False, None) if X_valid is not None else None
        trainer = Trainer(
            self._trainer_config(), metric=self._val_metric, work_dir=work_dir, callbacks=callbacks
        )
        module = self._build_module()
        self.module_ = trainer.fit(module, train_loader, valid_loader)
        self.history_ = trainer.history
        self.module_.to("cpu")
        return self

    def predict_logits(self, X) -> np.ndarray:
        """Logits in ``X``'s row order. An eval batch sampler may reorder rows (e.g. sorted by length) if it
        exposes that permutation as ``order`` (``order[k]`` = the row yielded k-th)."""
        loader = self._make_loader(X, None, False, None)
        logits = Trainer(self._trainer_config()).predict(self.module_, loader)
        self.module_.to("cpu")
        order = getattr(loader.batch_sampler, "order", None)
        if order is None:
            return logits
        out = np.empty_like(logits)
        out[np.asarray(order)] = logits
        return out

    def predict_proba(self, X) -> np.ndarray:
        return self._proba(self.predict_logits(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(-1)]

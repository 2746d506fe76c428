"""scikit-learn shaped wrapper around the shared trainer, so deep models and sklearn models are interchangeable.

A deep model is a dataclass inheriting its config and :class:`TorchEstimator`; the config holds the trainer's keys
as one nested :class:`~common.trainer.TrainerConfig` (``trainer``), with the model's own defaults::

    @dataclass
    class TextCNNConfig(DeepConfig):
        embed_dim: int = 128
        trainer: TrainerConfig = trainer_defaults(epochs=5, lr=2e-3)

    @register_model("textcnn", config=TextCNNConfig)
    @dataclass(eq=False, repr=False)
    class TextCNN(TextCNNConfig, TorchEstimator):
        def _build_module(self): ...                        # forward(batch) -> {"loss", "logits"}
        def _make_loader(self, X, y, train, generator): ...  # DataLoader of dict batches ("labels" when y given)

The dataclass generates ``__init__`` from the config's fields, so ``get_params``/``clone`` work and every
hyper-parameter is a typed config key. Fitted state ends in ``_``: ``module_`` (the trained network),
``classes_``, ``n_classes_``, ``history_``; :mod:`common.persist` stores it without pickle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split

from common.config import ConfigBase
from common.errors import UserError
from common.metrics import METRICS, Metric
from common.seed import seed_everything
from common.trainer import Trainer, TrainerConfig


@dataclass
class DeepConfig(ConfigBase):
    """What every deep model's config holds: the trainer's keys, nested (``--set epochs=3`` still reaches them)."""

    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def argmax(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits).argmax(-1)


class TorchEstimator(BaseEstimator):
    """Hides :class:`common.trainer.Trainer` inside ``fit``; see the module docstring."""

    #: the validation score on the inner holdout (early stopping, best checkpoint); its direction is the metric's
    val_metric: Metric = METRICS["accuracy"].on(argmax)

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
        self.classes_ = np.unique(np.asarray(y))
        self.n_classes_ = len(self.classes_)
        return self._transform_targets(y)

    def _transform_targets(self, y) -> np.ndarray:
        """Encode targets with the encoding fitted on the training targets."""
        y = np.asarray(y)
        codes = np.searchsorted(self.classes_, y)
        inside = (codes < len(self.classes_)) & (
            self.classes_[np.minimum(codes, len(self.classes_) - 1)] == y
        )
        if not inside.all():
            raise UserError(
                f"target {y[~inside][0]!r} is not among the training classes {self.classes_.tolist()}"
            )
        return codes.astype(np.int64)

    def _proba(self, logits: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.from_numpy(logits).float(), dim=-1).numpy()

    def _stratify(self, y_encoded: np.ndarray) -> np.ndarray | None:
        """What the inner holdout is stratified on (None: random, e.g. when a class or the holdout is too small)."""
        if y_encoded.ndim != 1:
            return None
        _, counts = np.unique(y_encoded, return_counts=True)
        n_valid = int(np.ceil(self.trainer.valid_size * len(y_encoded)))
        fits = counts.min() >= 2 and len(counts) <= n_valid <= len(y_encoded) - len(counts)
        return y_encoded if fits else None

    def _restore_module(self) -> torch.nn.Module:
        """An untrained module of the fitted shape, to load saved weights into (default: :meth:`_build_module`)."""
        return self._build_module()

    def check_data(self, X, y) -> None:  # noqa: B027 (an optional hook)
        """Refuse training data this configuration cannot fit (a :class:`UserError`), before anything is written."""

    def input_paths(self) -> dict[str, str]:
        """``{param: path}`` of the files or folders ``fit`` reads besides the data (a pretrained checkpoint). A run
        records their content fingerprints, and a re-run into it is refused (until ``--force``) once one of them
        changed, as for changed training data. Params named ``pretrained`` or ``pretrained_path`` count without
        this hook (:func:`common.cli.model_input_paths`): BERT's ``pretrained`` folder, a street model's checkpoint.
        Default: none."""
        return {}

    # ---- the estimator contract
    def _trainer_config(self) -> TrainerConfig:
        """The trainer config as it runs (models with size-dependent defaults fill them in here)."""
        return self.trainer

    def fit(self, X, y, X_valid=None, y_valid=None, *, work_dir: str | Path | None = None, callbacks=()):
        from common.cv import take

        cfg = self._trainer_config()
        generator = seed_everything(cfg.seed, deterministic=cfg.deterministic)
        y_enc = self._encode_targets(y)
        if X_valid is None and cfg.valid_size > 0:
            idx = np.arange(len(y_enc))
            train_idx, valid_idx = train_test_split(
                idx, test_size=cfg.valid_size, random_state=cfg.seed, stratify=self._stratify(y_enc)
            )
            X_train, y_train = take(X, np.sort(train_idx)), y_enc[np.sort(train_idx)]
            X_valid, y_valid_enc = take(X, np.sort(valid_idx)), y_enc[np.sort(valid_idx)]
        else:
            X_train, y_train = X, y_enc
            y_valid_enc = self._transform_targets(y_valid) if X_valid is not None else None
        train_loader = self._make_loader(X_train, y_train, True, generator)
        valid_loader = self._make_loader(X_valid, y_valid_enc, False, None) if X_valid is not None else None
        trainer = Trainer(cfg, metric=self.val_metric, work_dir=work_dir, callbacks=callbacks)
        module = self._build_module()
        self.module_ = trainer.fit(module, train_loader, valid_loader)
        self.history_ = trainer.history
        self.prior_seconds_ = trainer.resumed_seconds
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


def model_fields(config) -> dict:
    """The config's own fields (shallow: the nested trainer config stays an object), for ``cls(**fields)``."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}

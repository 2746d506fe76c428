"""Multi-digit recognisers: a backbone, then one 11-way head per character position (10 = blank).

``cnn`` is a small CNN trained from scratch; ``resnet`` is any timm backbone by name (``backbone=resnet18``,
``resnet34``, ``resnet50``, ...) optionally initialised from a local checkpoint (``pretrained_path``; never a hub
download). The loss is the sum over positions of the cross-entropy; decoding stops at the first blank.
``predict_proba`` returns (n, max_chars, 11) probabilities, ``predict`` digit strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import timm
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from common.config import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    Probability,
    trainer_defaults,
)
from common.distributed import resolve_device
from common.errors import UserError
from common.estimator import DeepConfig, TorchEstimator
from common.metrics import METRICS
from common.registry import register_model
from common.seed import worker_init_fn
from common.trainer import Trainer, TrainerConfig
from competitions.street_char_rec import labels as codec
from competitions.street_char_rec.cache import Resize
from competitions.street_char_rec.dataset import ImageDataset, StreetImages, collate_batch
from competitions.street_char_rec.transforms import AugParams, eval_transform, train_transform, tta_transform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


Side = Annotated[int, Field(ge=8, le=1024)]
Rotation = Annotated[float, Field(ge=0, le=90)]  # degrees, +-
Shear = Annotated[float, Field(ge=0, le=45)]  # degrees, +-, horizontal


@dataclass
class StreetConfig(DeepConfig):
    """Keys every street model accepts, beside the trainer's (``trainer``: epochs, batch_size, lr, ...)."""

    img_h: Side = 64
    img_w: Side = 128
    keep_aspect: bool = True  # resize keeping the aspect ratio (border-replicated padding) or stretch
    max_chars: PositiveInt = 6
    aug: bool = True
    aug_rotate: Rotation = 8.0
    aug_scale: Fraction = 0.1
    aug_shift: Fraction = 0.05
    aug_shear: Shear = 5.0
    aug_color: NonNegativeFloat = 0.3
    aug_blur_p: Probability = 0.2
    aug_noise_p: Probability = 0.2
    aug_dropout_p: Probability = 0.2
    tta: NonNegativeInt = 0  # extra test-time views averaged with the plain one


class MultiHead(nn.Module):
    """``features`` maps normalised images to (N, F); one linear head per position gives (N, max_chars, 11)."""

    def __init__(self, features: nn.Module, n_features: int, max_chars: int, dropout: float = 0.0):
        super().__init__()
        self.features = features
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.Linear(n_features, max_chars * codec.N_CLASSES)  # all heads in one matmul
        self.max_chars = max_chars
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, batch: dict) -> dict:
        images = batch["images"]
        if images.dtype == torch.uint8:  # N x H x W x 3 from the cache; the permuted view is channels_last
            x = (images.permute(0, 3, 1, 2).float() - self.mean) / self.std
        else:  # float N x 3 x H x W, already normalised (e.g. a torchvision pipeline)
            x = images
        logits = self.heads(self.dropout(self.features(x))).view(-1, self.max_chars, codec.N_CLASSES)
        out = {"logits": logits}
        if "labels" in batch:
            loss = nn.functional.cross_entropy(
                logits.float().reshape(-1, codec.N_CLASSES), batch["labels"].reshape(-1), reduction="none"
            )
            out["loss"] = loss.view(-1, self.max_chars).sum(1).mean()
        return out


class StreetEstimator(TorchEstimator):
    """What both models share: targets, loaders, the string-accuracy metric, TTA and string predictions."""

    val_metric = METRICS["string_accuracy"].on(codec.decode_scores, codec.decode)

    def check_data(self, X, y) -> None:
        """Every label fits ``max_chars`` positions (checked when the data is read, not when a fold starts)."""
        lengths = np.char.str_len(np.asarray(y).astype(str))
        if len(lengths) and lengths.max() > self.max_chars:
            i = int(lengths.argmax())
            where = f" ({X.paths[X.rows[i]]})" if hasattr(X, "paths") else ""
            raise UserError(
                f"label {str(np.asarray(y)[i])!r}{where} has {lengths[i]} digits but max_chars is {self.max_chars}; "
                f"raise it with --set max_chars={lengths.max()}"
            )

    def _features(self) -> tuple[nn.Module, int]:
        raise NotImplementedError

    def _build_module(self) -> nn.Module:
        features, n_features = self._features()
        return MultiHead(features, n_features, self.max_chars, getattr(self, "dropout", 0.0))

    # targets
    def _encode_targets(self, y) -> np.ndarray:
        self.classes_ = np.arange(codec.N_CLASSES)
        return codec.encode(np.asarray(y).astype(str), self.max_chars)

    def _transform_targets(self, y) -> np.ndarray:
        return codec.encode(np.asarray(y).astype(str), self.max_chars)

    def _stratify(self, y_encoded: np.ndarray) -> np.ndarray | None:
        """The number of digits, under the base class's rule (each stratum twice, a holdout large enough for every
        stratum): pseudo-labelled strings of a young model can add strata a tiny holdout cannot hold."""
        return super()._stratify((y_encoded != codec.BLANK).sum(1))

    def _proba(self, logits: np.ndarray) -> np.ndarray:
        return torch.softmax(torch.from_numpy(logits).float(), dim=-1).numpy()

    # data
    def _resize(self) -> Resize:
        return Resize(self.img_h, self.img_w, self.keep_aspect)

    def _aug(self) -> AugParams:
        return AugParams(
            rotate=self.aug_rotate,
            scale=self.aug_scale,
            shift=self.aug_shift,
            shear=self.aug_shear,
            color=self.aug_color,
            blur_p=self.aug_blur_p,
            noise_p=self.aug_noise_p,
            dropout_p=self.aug_dropout_p,
        )

    def _loader(self, X, y, train: bool, generator, transform) -> DataLoader:
        if not isinstance(X, StreetImages):
            raise TypeError(f"{type(self).__name__} expects StreetImages, got {type(X).__name__}")
        dataset = ImageDataset(X.cache_file(self._resize()), X.rows, y, transform)
        cfg = self.trainer
        workers = cfg.num_workers
        return DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > cfg.batch_size,
            collate_fn=collate_batch,
            num_workers=workers,
            pin_memory=resolve_device(cfg.device).type == "cuda",
            persistent_workers=workers > 0 and train,
            prefetch_factor=4 if workers > 0 else None,
            worker_init_fn=worker_init_fn if workers > 0 else None,
            generator=generator,
        )

    def _make_loader(self, X, y, train: bool, generator) -> DataLoader:
        transform = train_transform(self._aug()) if train and self.aug else eval_transform()
        return self._loader(X, y, train, generator, transform)

    # predictions
    def predict_proba(self, X) -> np.ndarray:
        proba = self._proba(self.predict_logits(X))
        if self.tta:
            trainer = Trainer(self._trainer_config())
            for view in range(1, self.tta + 1):
                loader = self._loader(X, None, False, None, tta_transform(view))
                proba += self._proba(trainer.predict(self.module_, loader))
            self.module_.to("cpu")
            proba /= self.tta + 1
        return proba

    def predict(self, X) -> np.ndarray:
        return codec.decode_scores(self.predict_proba(X))


@dataclass
class TakeOffConfig(StreetConfig):
    """The short-budget recipe of the models trained from scratch (``cnn``, ``resnet``, ``crnn``).

    Such a model sits on a plateau (it predicts the commonest lengths and digits) until it learns where the digits
    are, then takes off; everything below is chosen to make that happen early. Measured on the 6,000-image street
    bench (bench/street_models.py, README) with the resnet: the tutorial's light augmentation on stretched images,
    Adam at 1e-3 without weight decay or clipping reproduced the tutorial's run; batch 32 (a quarter more steps per
    epoch than its 40), a 5% warm-up and the peak lr held until a decay over the last 20% of the steps (all in one
    run) took off 1-2 epochs earlier. The small cnn (0.015 -> 0.402 at 10 epochs there) and the crnn on a resnet18
    (demo data) took off with the same settings."""

    keep_aspect: bool = False
    aug_rotate: Rotation = 10.0
    aug_scale: Fraction = 0.0
    aug_shift: Fraction = 0.03
    aug_shear: Shear = 0.0
    aug_blur_p: Probability = 0.0
    aug_noise_p: Probability = 0.0
    aug_dropout_p: Probability = 0.0
    #: every training row trained on for a fixed number of epochs, the decay ending the run (the tutorial trains
    #: on all rows too); 24 epochs of the contest's 30k images are about 22k steps at batch 32
    trainer: TrainerConfig = trainer_defaults(
        epochs=24,
        batch_size=32,
        lr=1e-3,
        scheduler="warmup_stable_decay",
        warmup_ratio=0.05,
        decay_ratio=0.2,
        clip_grad=None,
        valid_size=0.0,
    )


@dataclass
class CNNConfig(TakeOffConfig):
    width: PositiveInt = 32  # channels of the first block; doubled per block
    dropout: Fraction = 0.2


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


@register_model("cnn", config=CNNConfig)
@dataclass(eq=False, repr=False)
class StreetCNN(CNNConfig, StreetEstimator):
    """A stride-2 stem, three conv blocks (2w, 4w, 4w channels) each halving the size, average pooling over
    height and into 4 column bins over width (so the heads know where each character sits), then the heads."""

    def _features(self) -> tuple[nn.Module, int]:
        w = self.width
        body = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            _block(w, 2 * w),
            _block(2 * w, 4 * w),
            _block(4 * w, 4 * w),
            nn.AdaptiveAvgPool2d((1, 4)),
            nn.Flatten(),
        )
        return body, 4 * w * 4

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "width": trial.suggest_categorical("width", [16, 32, 48]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
            "aug_rotate": trial.suggest_float("aug_rotate", 0.0, 15.0),
        }


@dataclass
class ResNetConfig(TakeOffConfig):
    backbone: str = "resnet18"  # any timm model name
    pretrained_path: str | None = None  # a local checkpoint (state dict) for the backbone; never downloaded
    dropout: Fraction = 0.0
    # global pooling and no zero-init: with the rest of the take-off recipe they reproduced the tutorial's run
    columns: PositiveInt = 1  # width bins of the pooled feature map (1 = global average pooling)
    #: timm's zero init of each residual block's last norm weight (backbones without the option ignore it)
    zero_init_last: bool = False


def load_backbone(name: str, pretrained_path: str | None, zero_init_last: bool = True) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=0)``, then the local checkpoint's weights.
    ``zero_init_last`` reaches the backbones that take it (timm's ResNets and relatives); others ignore it."""
    try:
        try:
            model = timm.create_model(name, pretrained=False, num_classes=0, zero_init_last=zero_init_last)
        except TypeError:  # a family without the option
            model = timm.create_model(name, pretrained=False, num_classes=0)
    except RuntimeError as exc:
        raise UserError(
            f"backbone {name!r}: {exc} (see timm.list_models(); e.g. resnet18, resnet50)"
        ) from None
    if pretrained_path:
        path = Path(pretrained_path)
        if not path.is_file():
            raise UserError(f"pretrained_path {path} not found; expected a local checkpoint of {name}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is bad input
            raise UserError(f"{path}: cannot read the checkpoint ({exc})") from None
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
        state = {k.removeprefix("module."): v for k, v in state.items()}
        state = {
            k: v for k, v in state.items() if not k.startswith(model.default_cfg.get("classifier", "fc"))
        }
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing:
            raise UserError(
                f"{path}: not a checkpoint of {name}: missing {len(missing)} weight(s) like {missing[0]}"
            )
    return model


class ColumnPooled(nn.Module):
    """A timm backbone's feature map averaged over height and into ``columns`` bins over width (1: global
    average pooling, the default; with more bins each head also sees where in the image the features were)."""

    def __init__(self, body: nn.Module, columns: int):
        super().__init__()
        self.body = body
        self.pool = nn.AdaptiveAvgPool2d((1, columns))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body.forward_features(x)).flatten(1)


@register_model("resnet", config=ResNetConfig)
@dataclass(eq=False, repr=False)
class StreetResNet(ResNetConfig, StreetEstimator):
    """A timm backbone (its classifier removed, its feature map pooled by :class:`ColumnPooled`) with the
    per-position heads."""

    def _features(self) -> tuple[nn.Module, int]:
        model = load_backbone(self.backbone, self.pretrained_path, self.zero_init_last)
        return ColumnPooled(model, self.columns), model.num_features * self.columns

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),  # the default is 0
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "aug_rotate": trial.suggest_float("aug_rotate", 0.0, 15.0),
            "aug_dropout_p": trial.suggest_float("aug_dropout_p", 0.0, 0.5),
        }


# the models that decode whole strings themselves register here too (they build on the classes above)
from competitions.street_char_rec import crnn, detector  # noqa: E402, F401

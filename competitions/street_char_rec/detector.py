"""``detector``: finds each digit's box and class (torchvision FCOS by default, ``arch=retinanet`` for RetinaNet) on
a feature pyramid over the small CNN or any timm backbone (random init or a local checkpoint; torchvision's
constructors are never asked for weights), trained on the JSON's per-digit boxes (:mod:`.boxes` maps them onto the
cached, resized images; the augmentation moves them with the image).

Reading a string: the detections of every class are merged across classes (class-agnostic clustering at IoU
``nms_iou``: the most confident box absorbs the boxes overlapping it, the cluster keeps each class's best score),
clusters scoring at least ``score_threshold`` are the digits, read left to right by box centre. With ``tta=k`` the
image is also detected at k other scales (1.2, 1/1.2, 1.44, ...; no flips: a flipped digit is another shape), boxes
are mapped back and clustered together, and a cluster's class scores are averaged over the views (a digit found in
one view of three keeps a third of its score), its box is the score-weighted mean (weighted box fusion).

``predict_proba`` is the contest's (n, max_chars, 11) array (:mod:`.positions`): character i's distribution is its
cluster's class scores normalised over the digits; the position after the last character is blank with
probability 1 - s, s the best score of the rejected clusters (spread over that cluster's classes); later positions
are blank. It decodes back to exactly the detector's string. No cluster above the threshold: the best cluster is
read as a one-digit string; no detection at all: "1" (the commonest leading digit of house numbers). More confident
digits than ``max_chars``: the ``max_chars`` most confident are kept (a warning counts such images).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Literal

import albumentations as A
import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from common.config import PositiveInt, Probability, trainer_defaults
from common.distributed import resolve_device
from common.errors import UserError
from common.metrics import METRICS, Metric
from common.registry import register_model
from common.seed import worker_init_fn
from common.trainer import TrainerConfig
from competitions.street_char_rec import labels as codec
from competitions.street_char_rec.backbones import FeatureLevels, SmallConvNet, TimmLevels, one_of
from competitions.street_char_rec.boxes import check_boxes, image_sizes, to_resized
from competitions.street_char_rec.dataset import BoxDataset, StreetImages, collate_batch
from competitions.street_char_rec.labels import BLANK
from competitions.street_char_rec.models import IMAGENET_MEAN, IMAGENET_STD, StreetConfig, StreetEstimator
from competitions.street_char_rec.positions import assemble, digit_codes, warn_truncated
from competitions.street_char_rec.transforms import train_transform

#: the digit read when an image has no detection at all
FALLBACK_DIGIT = 1
#: candidate boxes below this score are dropped inside the network (far below any useful ``score_threshold``)
CANDIDATE_SCORE = 0.05
#: columns of a packed detection: x1, y1, x2, y2, score (-1: padding), class, view
DET_COLUMNS = 7


def tta_scales(n: int) -> list[float]:
    """The plain view and ``n`` more: 1.2, 1/1.2, 1.44, 1/1.44, ..."""
    return [1.0] + [1.2 ** (((k + 1) // 2) * (1 if k % 2 else -1)) for k in range(1, n + 1)]


# ------------------------------------------------------------------------------------------ decoding
def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def merge_detections(rows: np.ndarray, n_views: int, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Class-agnostic clustering of one image's detections (rows of :data:`DET_COLUMNS`, padding removed):
    ``(boxes (C, 4), class scores (C, 10))`` per cluster, most confident first. A cluster's class score is, per
    view, the best score of that class among its boxes, averaged over ``n_views``; its box is the score-weighted
    mean of its boxes."""
    rows = rows[rows[:, 4] >= 0]
    rows = rows[np.argsort(-rows[:, 4], kind="stable")]
    free = np.ones(len(rows), dtype=bool)
    boxes, scores = [], []
    for i in range(len(rows)):
        if not free[i]:
            continue
        members = free & (box_iou(rows[i, :4], rows[:, :4]) >= iou)
        members[i] = True
        free &= ~members
        group = rows[members]
        weights = group[:, 4:5]
        boxes.append((group[:, :4] * weights).sum(0) / max(float(weights.sum()), 1e-12))
        per_view = np.zeros((n_views, codec.BLANK))
        np.maximum.at(per_view, (group[:, 6].astype(int), group[:, 5].astype(int)), group[:, 4])
        scores.append(per_view.sum(0) / n_views)
    if not boxes:
        return np.zeros((0, 4)), np.zeros((0, codec.BLANK))
    boxes, scores = np.array(boxes), np.array(scores)
    order = np.argsort(-scores.max(1), kind="stable")
    return boxes[order], scores[order]


def read_string(
    rows: np.ndarray, n_views: int, score_threshold: float, iou: float, max_chars: int
) -> tuple[str, np.ndarray, bool]:
    """One image's detections -> ``(string, (max_chars, 11) position probabilities, cut)``; see the module
    docstring."""
    boxes, scores = merge_detections(rows, n_views, iou)
    best = scores.max(1) if len(scores) else np.zeros(0)
    accepted = np.flatnonzero(best >= score_threshold)
    if not len(accepted) and len(best):
        accepted = np.array([0])  # the best cluster
    if not len(accepted):
        uniform = np.r_[np.full(codec.BLANK, 0.1), 0.0]
        text, proba, _ = assemble([FALLBACK_DIGIT], uniform[None], None, max_chars)
        return text, proba, False
    cut = len(accepted) > max_chars
    accepted = accepted[:max_chars]  # clusters are sorted by score: the most confident
    accepted = accepted[np.argsort((boxes[accepted, 0] + boxes[accepted, 2]) / 2, kind="stable")]
    rejected = np.setdiff1d(np.arange(len(best)), accepted)
    end = None
    if len(rejected):
        r = rejected[int(best[rejected].argmax())]
        s = float(best[r])
        end = np.r_[s * scores[r] / max(float(scores[r].sum()), 1e-12), 1.0 - s]
    dists = np.concatenate([scores[accepted], np.zeros((len(accepted), 1))], axis=1)
    text, proba, _ = assemble(scores[accepted].argmax(1), dists, end, max_chars)
    return text, proba, cut


def decode_detections(
    dets: np.ndarray, n_views: int, score_threshold: float, iou: float, max_chars: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Packed detections (n, M, 7) -> ``(strings, (n, max_chars, 11) probabilities, images cut)``."""
    strings, proba, cut = [], np.zeros((len(dets), max_chars, codec.N_CLASSES), dtype=np.float32), 0
    for k, rows in enumerate(np.asarray(dets, dtype=np.float64)):
        text, proba[k], was_cut = read_string(rows, n_views, score_threshold, iou, max_chars)
        strings.append(text)
        cut += was_cut
    return np.array(strings, dtype=object).astype(str), proba, cut


# ------------------------------------------------------------------------------------------ the network
class Pyramid(nn.Module):
    """Backbone levels + a feature pyramid, as torchvision's detectors want (``out_channels``, a dict of maps).
    The backbone runs under the trainer's autocast (``amp_dtype``, set per call by :class:`Detector`); the pyramid,
    heads, losses and box coding run in float32 (bf16 box coordinates would be off by up to half a pixel)."""

    def __init__(self, levels: FeatureLevels, channels: int):
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork

        self.body = levels
        self.fpn = FeaturePyramidNetwork(levels.channels, channels)
        self.out_channels = channels
        self.amp_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> OrderedDict:
        dtype = self.amp_dtype
        with torch.autocast(x.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            feats = self.body(x)
        return self.fpn(OrderedDict((str(i), f.float()) for i, f in enumerate(feats)))


def _keep_size_transform(img_h: int, img_w: int):
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    class KeepSize(GeneralizedRCNNTransform):
        """Normalises and batches, never resizes: the cache already made every image the model's size (and a
        TTA view keeps its scale)."""

        def resize(self, image, target=None):
            return image, target

    return KeepSize(img_h, img_w, list(IMAGENET_MEAN), list(IMAGENET_STD), size_divisible=32)


class Detector(nn.Module):
    """``forward(batch)``: in training the summed detection losses (``boxes``/``box_labels`` in the batch); in
    evaluation ``{"logits": packed detections (N, views * max_detections, 7)}`` for each scale in ``scales``, boxes
    in the input image's pixels."""

    def __init__(self, model: nn.Module, max_detections: int):
        super().__init__()
        self.model = model
        self.max_detections = max_detections
        self.scales: list[float] = [1.0]

    @staticmethod
    def _targets(batch: dict) -> list[dict]:
        targets = []
        for boxes, digits in zip(batch["boxes"], batch["box_labels"], strict=True):
            wh = boxes[:, 2:] - boxes[:, :2]
            keep = (digits >= 0) & (wh > 1e-3).all(1)
            targets.append({"boxes": boxes[keep].float(), "labels": digits[keep]})
        return targets

    def forward(self, batch: dict) -> dict:
        images = batch["images"]
        x = images.permute(0, 3, 1, 2).float() / 255 if images.dtype == torch.uint8 else images.float()
        device = x.device.type
        amp = torch.is_autocast_enabled(device)
        self.model.backbone.amp_dtype = torch.get_autocast_dtype(device) if amp else None
        with torch.autocast(device, enabled=False):
            if self.training:
                if "boxes" not in batch:
                    raise ValueError("a training batch of the detector needs boxes and box_labels")
                losses = self.model(list(x), self._targets(batch))
                return {"loss": sum(losses.values())}
            return {"logits": self._detect(x)}

    def _detect(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        k = self.max_detections
        out = x.new_zeros((n, len(self.scales) * k, DET_COLUMNS))
        out[..., 4] = -1
        for v, scale in enumerate(self.scales):
            view = x
            if scale != 1.0:
                size = (max(8, round(h * scale)), max(8, round(w * scale)))
                view = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
            back = x.new_tensor([w / view.shape[-1], h / view.shape[-2]] * 2)
            for i, det in enumerate(self.model(list(view))):
                m = min(len(det["scores"]), k)
                rows = out[i, v * k : v * k + m]
                rows[:, :4] = det["boxes"][:m] * back
                rows[:, 4] = det["scores"][:m]
                rows[:, 5] = det["labels"][:m].float()
                rows[:, 6] = v
        return out


# ------------------------------------------------------------------------------------------ the model
@dataclass
class DetectorConfig(StreetConfig):
    arch: Literal["fcos", "retinanet"] = "fcos"
    backbone: str = "small"  # "small" (a CNN from scratch) or any timm model name
    pretrained_path: str | None = None  # a local checkpoint of a timm backbone; never downloaded
    width: PositiveInt = 32  # channels of the small CNN's first block
    min_stride: Annotated[int, one_of(4, 8)] = 4  # stride of the finest pyramid level
    levels: Annotated[int, Field(ge=1, le=4)] = 3  # pyramid levels: strides min_stride, 2 min_stride, ...
    fpn_channels: Annotated[int, Field(ge=32, le=512, multiple_of=32)] = 64  # FCOS's GroupNorm: 32 groups
    head_convs: Annotated[int, Field(ge=1, le=4)] = 2  # FCOS head depth (RetinaNet's is fixed at 4)
    score_threshold: Probability = 0.3  # a cluster scoring this or more is a digit
    nms_iou: Probability = 0.5  # boxes overlapping this much are one digit, whatever their classes
    max_detections: Annotated[int, Field(ge=1, le=100)] = 20  # per image and view
    trainer: TrainerConfig = trainer_defaults(epochs=12)


@register_model("detector", config=DetectorConfig)
@dataclass(eq=False, repr=False)
class StreetDetector(DetectorConfig, StreetEstimator):
    """See the module docstring."""

    #: why ``pseudo`` cannot retrain this model (read by :mod:`common.pseudo`)
    pseudo_unsupported = "it trains on a box per digit, and a test image's predicted string carries no boxes"

    @property
    def val_metric(self) -> Metric:
        """Whole-string accuracy of the strings read from the plain view's detections."""
        args = (1, self.score_threshold, self.nms_iou, self.max_chars)
        return METRICS["string_accuracy"].on(lambda dets: decode_detections(dets, *args)[0], codec.decode)

    def check_data(self, X, y) -> None:
        """Every labelled image has one box per digit, each with an area and inside its image (see
        :mod:`.boxes`); labels of any length are fine."""
        y = digit_codes(y)  # digits only
        boxes = X.row_boxes() if isinstance(X, StreetImages) else None
        if boxes is None:
            raise UserError(
                "detector: the training images carry no digit boxes (the contest's JSON gives them)"
            )
        labels = codec.decode(y)
        paths = X.paths[X.rows]
        for label, b, hw, path in zip(labels, boxes, image_sizes(paths), paths, strict=True):
            check_boxes(b, hw, label, path)

    # network
    def _levels(self, load_weights: bool) -> FeatureLevels:
        strides = [self.min_stride * 2**j for j in range(self.levels)]
        if self.backbone == "small":
            first = {4: 1, 8: 2}[self.min_stride]
            return SmallConvNet(
                self.width, [(2, 2)] * (first + self.levels), take=list(range(first, first + self.levels))
            )

        def pick(reductions: list[int]) -> list[int]:
            missing = [s for s in strides if s not in reductions]
            if missing:
                raise UserError(
                    f"backbone {self.backbone!r} has feature levels at strides {sorted(set(reductions))}; "
                    f"min_stride={self.min_stride} levels={self.levels} needs {strides}"
                )
            return [max(i for i, r in enumerate(reductions) if r == s) for s in strides]

        return TimmLevels(self.backbone, self.pretrained_path if load_weights else None, pick)

    def _build_module(self, load_weights: bool = True) -> nn.Module:
        from torchvision.models.detection import FCOS, RetinaNet
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.fcos import FCOSHead
        from torchvision.models.detection.retinanet import RetinaNetHead

        levels = self._levels(load_weights)
        backbone = Pyramid(levels, self.fpn_channels)
        strides = levels.strides
        common = {
            "min_size": self.img_h,
            "max_size": self.img_w,
            "image_mean": list(IMAGENET_MEAN),
            "image_std": list(IMAGENET_STD),
            "score_thresh": CANDIDATE_SCORE,
            "detections_per_img": self.max_detections,
            "topk_candidates": 200,
        }
        n_classes = codec.BLANK  # the ten digits (no background class in FCOS/RetinaNet heads)
        if self.arch == "fcos":
            # one location per cell; its size sets which level learns which box sizes (4-8x it)
            anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
            head = FCOSHead(self.fpn_channels, 1, n_classes, num_convs=self.head_convs)
            model = FCOS(backbone, n_classes, anchor_generator=anchors, head=head, **common)
        else:
            sizes = tuple(tuple(round(4 * s * 2 ** (i / 3)) for i in range(3)) for s in strides)
            anchors = AnchorGenerator(sizes, ((1.0, 2.0),) * len(strides))  # square and tall (h = 2w)
            head = RetinaNetHead(self.fpn_channels, anchors.num_anchors_per_location()[0], n_classes)
            model = RetinaNet(backbone, n_classes, anchor_generator=anchors, head=head, **common)
        model.transform = _keep_size_transform(self.img_h, self.img_w)
        return Detector(model, self.max_detections)

    def _restore_module(self) -> nn.Module:
        """The stored weights replace the backbone's: the local checkpoint need not exist any more."""
        return self._build_module(load_weights=False)

    # targets
    def _encode_targets(self, y) -> np.ndarray:
        self.classes_ = np.arange(codec.N_CLASSES)
        return digit_codes(y)

    def _transform_targets(self, y) -> np.ndarray:
        return digit_codes(y)

    # data
    def _make_loader(self, X, y, train: bool, generator) -> DataLoader:
        if not (train and y is not None):
            return super()._make_loader(X, y, False, generator)
        if not isinstance(X, StreetImages) or X.boxes is None:
            raise UserError(
                "detector: the training images carry no digit boxes (the contest's JSON gives them)"
            )
        resize = self._resize()
        sizes = image_sizes(X.paths[X.rows])
        boxes = [to_resized(b, hw, resize) for b, hw in zip(X.row_boxes(), sizes, strict=True)]
        digits = [codes[codes != BLANK] for codes in np.asarray(y)]
        for path, b, d in zip(X.paths[X.rows], boxes, digits, strict=True):
            if len(b) != len(d):
                raise UserError(f"{path}: {len(b)} box(es) for {len(d)} digit(s)")
        transform = None
        if self.aug:
            bbox = A.BboxParams(format="pascal_voc", label_fields=["digits"], min_visibility=0.3, clip=True)
            transform = A.Compose(train_transform(self._aug()).transforms, bbox_params=bbox)
        dataset = BoxDataset(X.cache_file(resize), X.rows, y, boxes, digits, transform)
        cfg = self.trainer
        workers = cfg.num_workers
        return DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=True,
            drop_last=len(dataset) > cfg.batch_size,
            collate_fn=collate_batch,
            num_workers=workers,
            pin_memory=resolve_device(cfg.device).type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            worker_init_fn=worker_init_fn if workers > 0 else None,
            generator=generator,
        )

    # predictions
    def detections(self, X) -> np.ndarray:
        """Packed detections (n, views * max_detections, 7) of the plain view and the ``tta`` scales."""
        self.module_.scales = tta_scales(self.tta)
        try:
            return self.predict_logits(X)
        finally:
            self.module_.scales = [1.0]

    def decode_detections(self, dets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        args = (self.tta + 1, self.score_threshold, self.nms_iou, self.max_chars)
        strings, proba, cut = decode_detections(dets, *args)
        warn_truncated(cut, len(strings), self.max_chars, "detector")
        return strings, proba

    def predict_proba(self, X) -> np.ndarray:
        return self.decode_detections(self.detections(X))[1]

    def predict(self, X) -> np.ndarray:
        return self.decode_detections(self.detections(X))[0]

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
            "score_threshold": trial.suggest_float("score_threshold", 0.15, 0.6),
            "nms_iou": trial.suggest_float("nms_iou", 0.3, 0.7),
            "fpn_channels": trial.suggest_categorical("fpn_channels", [32, 64, 128]),
            "aug_rotate": trial.suggest_float("aug_rotate", 0.0, 10.0),
        }

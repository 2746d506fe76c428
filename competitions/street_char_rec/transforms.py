"""Augmentation and evaluation transforms (albumentations 2) on the cached, already resized uint8 images.

They run inside the Dataset, so DataLoader workers parallelise them; normalisation to float happens on the device
inside the model, which keeps host work and host-to-device bytes (uint8) small. No horizontal flip: it would turn
digits into other shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2


@dataclass(frozen=True)
class AugParams:
    rotate: float = 8.0  # degrees, +-
    scale: float = 0.1  # +- relative zoom
    shift: float = 0.05  # +- share of the image size
    shear: float = 5.0  # degrees, +-
    color: float = 0.3  # brightness/contrast/saturation jitter strength (hue = color / 6)
    blur_p: float = 0.2
    noise_p: float = 0.2
    dropout_p: float = 0.2


def train_transform(p: AugParams) -> A.Compose:
    return A.Compose(
        [
            A.Affine(
                scale=(1 - p.scale, 1 + p.scale),
                translate_percent={"x": (-p.shift, p.shift), "y": (-p.shift, p.shift)},
                rotate=(-p.rotate, p.rotate),
                shear={"x": (-p.shear, p.shear), "y": (0.0, 0.0)},
                border_mode=cv2.BORDER_REPLICATE,
                p=0.8,
            ),
            A.ColorJitter(
                brightness=p.color,
                contrast=p.color,
                saturation=p.color,
                hue=p.color / 6,
                p=0.8 if p.color else 0,
            ),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5))], p=p.blur_p),
            A.GaussNoise(std_range=(0.02, 0.08), p=p.noise_p),
            A.CoarseDropout(
                num_holes_range=(1, 3),
                hole_height_range=(0.1, 0.3),
                hole_width_range=(0.05, 0.15),
                p=p.dropout_p,
            ),
        ]
    )


def eval_transform() -> A.Compose:
    """Evaluation: the cached images are already at model size, so nothing but the pipeline's shape."""
    return A.Compose([A.NoOp()])


def tta_transform(view: int) -> A.Compose:
    """Deterministic test-time views: small zooms and shifts, view 1, 2, ..."""
    scale = 1.0 + 0.05 * (1 if view % 2 else -1) * ((view + 1) // 2)
    shift = 0.03 * (1 if view % 4 in (1, 2) else -1)
    return A.Compose(
        [
            A.Affine(
                scale=(scale, scale),
                translate_percent={"x": (shift, shift), "y": (0.0, 0.0)},
                border_mode=cv2.BORDER_REPLICATE,
                p=1.0,
            )
        ]
    )

"""Per-digit boxes between the contest's JSON and the cached images the models see.

The JSON gives each digit's box as ``left, top, width, height`` in the original image's pixels. The cache
(:func:`.cache.resize`) scales each image to fit ``img_h x img_w`` (keeping the aspect ratio, then padding the border
equally on both sides; or stretching), so a box maps by the same per-axis scale and offset: :func:`to_resized`
gives ``x1, y1, x2, y2`` in the cached image, :func:`to_original` is its inverse (tested as a round trip and against
the pixels :func:`.cache.resize` writes).

Bad boxes, decided once here: a box that reaches past the image's border (common in SVHN-style labels) is **clipped**
to the image; a box with no width or height, or lying wholly outside its image, is an **error** naming the image
(:func:`check_boxes`): it cannot be a digit, and dropping it would leave the label with a digit and no box.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from common.errors import UserError
from competitions.street_char_rec.cache import Resize


def image_sizes(paths: list[str] | np.ndarray, workers: int = 8) -> np.ndarray:
    """(n, 2) int64 original height, width of each image, from its header (no decoding: ~0.1 ms an image)."""

    def one(path: str) -> tuple[int, int]:
        try:
            with Image.open(path) as img:
                return img.height, img.width
        except (OSError, SyntaxError, ValueError) as exc:
            raise UserError(f"{path}: cannot read the image's size ({exc})") from None

    paths = [str(p) for p in paths]
    if len(paths) < 64:
        sizes = [one(p) for p in paths]
    else:
        with ThreadPoolExecutor(workers) as pool:
            sizes = list(pool.map(one, paths, chunksize=256))
    return np.asarray(sizes, dtype=np.int64).reshape(-1, 2)


def geometry(size_hw: tuple[int, int], resize: Resize) -> tuple[float, float, float, float]:
    """``(sx, sy, dx, dy)``: a point ``(x, y)`` of the original image lands at ``(x * sx + dx, y * sy + dy)`` in the
    cached one (the arithmetic of :func:`.cache.resize`, rounding included)."""
    h, w = int(size_hw[0]), int(size_hw[1])
    if not resize.keep_aspect:
        return resize.img_w / w, resize.img_h / h, 0.0, 0.0
    scale = min(resize.img_h / h, resize.img_w / w)
    new_h = max(1, min(resize.img_h, round(h * scale)))
    new_w = max(1, min(resize.img_w, round(w * scale)))
    return new_w / w, new_h / h, float((resize.img_w - new_w) // 2), float((resize.img_h - new_h) // 2)


def clip_ltwh(boxes: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """``left, top, width, height`` boxes as ``x1, y1, x2, y2`` clipped to the original image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    h, w = size_hw
    x1 = np.clip(boxes[:, 0], 0, w)
    y1 = np.clip(boxes[:, 1], 0, h)
    x2 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w)
    y2 = np.clip(boxes[:, 1] + boxes[:, 3], 0, h)
    return np.stack([x1, y1, x2, y2], axis=1)


def to_resized(boxes: np.ndarray, size_hw: tuple[int, int], resize: Resize) -> np.ndarray:
    """``left, top, width, height`` boxes of an image of ``size_hw`` -> ``x1, y1, x2, y2`` (float32) in its cached,
    resized image, clipped to the original image first."""
    sx, sy, dx, dy = geometry(size_hw, resize)
    xyxy = clip_ltwh(boxes, size_hw)
    out = xyxy * np.array([sx, sy, sx, sy]) + np.array([dx, dy, dx, dy])
    return out.astype(np.float32)


def to_original(xyxy: np.ndarray, size_hw: tuple[int, int], resize: Resize) -> np.ndarray:
    """The inverse of :func:`to_resized` (without its clipping): ``x1, y1, x2, y2`` in the cached image ->
    ``left, top, width, height`` in the original image."""
    sx, sy, dx, dy = geometry(size_hw, resize)
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    x1, x2 = (xyxy[:, 0] - dx) / sx, (xyxy[:, 2] - dx) / sx
    y1, y2 = (xyxy[:, 1] - dy) / sy, (xyxy[:, 3] - dy) / sy
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


def check_boxes(boxes: np.ndarray, size_hw: tuple[int, int], label: str, where: str | Path) -> None:
    """One box per digit of ``label``, each with a positive width and height and some area inside the image
    (a box reaching past the border is fine: it is clipped). Anything else is a :class:`UserError` naming ``where``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) != len(label):
        raise UserError(f"{where}: {len(boxes)} box(es) for the {len(label)} digit(s) of {label!r}")
    h, w = size_hw
    inside = clip_ltwh(boxes, size_hw)
    for i, (box, clipped) in enumerate(zip(boxes, inside, strict=True)):
        left, top, width, height = (float(v) for v in box)
        described = (
            f"box {i + 1} of {label!r} (left {left:g}, top {top:g}, width {width:g}, height {height:g})"
        )
        if width <= 0 or height <= 0:
            raise UserError(
                f"{where}: {described} has no area; the detector needs a positive width and height"
            )
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            raise UserError(f"{where}: {described} lies outside the {w}x{h} image")

"""Decode each image once: a memory-mapped ``.npy`` of resized uint8 RGB arrays, keyed by the data's contents.

The key hashes every file's name, size and modification time plus the resize settings, so changing, adding or
removing an image (or asking for another size) builds a new cache, and the stale one of the same set and size is
removed. The file is written beside its final name and renamed into place (:mod:`common.atomic`), so a crash never
leaves a complete-looking cache. Caches live in ``<data_dir>/.cache/`` (``runs/street_char_rec/cache/`` when the
data folder is read-only); deleting them is always safe.

An image that fails to decode stops the build with a :class:`~common.errors.UserError` naming it, unless
``on_error="warn"`` (test images): then it becomes a blank (grey) image, still gets its row in the submission, and a
warning naming it is printed whenever the cache is used.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from common import distributed
from common.atomic import atomic_path, write_json
from common.errors import UserError

CACHE_VERSION = 1
BLANK_VALUE = 128


@dataclass(frozen=True)
class Resize:
    """Target size; ``keep_aspect`` scales to fit and pads by replicating the border, else stretches."""

    img_h: int = 64
    img_w: int = 128
    keep_aspect: bool = True

    def tag(self) -> str:
        return f"{self.img_h}x{self.img_w}-{'keep' if self.keep_aspect else 'stretch'}"


def decode(path: Path) -> np.ndarray:
    """An RGB uint8 array; :class:`UserError` naming the file when it is missing, truncated, not an image, or so
    large that decoding it would exhaust memory (Pillow's decompression-bomb limit). 16- and 32-bit grayscale
    images are scaled to 8 bits (Pillow's ``convert("RGB")`` would clip them to white)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                array = np.asarray(img).astype(np.float64)
                top = 65535.0 if img.mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
                gray = np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=2)
            return np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise UserError(f"{path}: too large to decode safely ({exc})") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: cannot decode the image ({exc}); expected a readable PNG or JPEG") from None


def resize(image: np.ndarray, size: Resize) -> np.ndarray:
    h, w = image.shape[:2]
    if not size.keep_aspect:
        interp = cv2.INTER_AREA if h > size.img_h or w > size.img_w else cv2.INTER_LINEAR
        return cv2.resize(image, (size.img_w, size.img_h), interpolation=interp)
    scale = min(size.img_h / h, size.img_w / w)
    new_h, new_w = max(1, min(size.img_h, round(h * scale))), max(1, min(size.img_w, round(w * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out = cv2.resize(image, (new_w, new_h), interpolation=interp)
    top, left = (size.img_h - new_h) // 2, (size.img_w - new_w) // 2
    return cv2.copyMakeBorder(
        out, top, size.img_h - new_h - top, left, size.img_w - new_w - left, cv2.BORDER_REPLICATE
    )


def fingerprint(paths: Sequence[Path], size: Resize) -> str:
    """Hash of names, sizes and mtimes of ``paths`` and the resize settings."""
    h = hashlib.sha1(f"v{CACHE_VERSION}|{size.tag()}".encode())
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise UserError(f"{path}: image missing (was it deleted after the labels were read?)") from None
        h.update(f"{path.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def default_cache_dir(data_dir: Path) -> Path:
    """``<data_dir>/.cache``, or ``runs/street_char_rec/cache`` when the data folder is not writable."""
    data_dir = Path(data_dir)
    return data_dir / ".cache" if os.access(data_dir, os.W_OK) else Path("runs") / "street_char_rec" / "cache"


def cache_path(cache_dir: Path, name: str, paths: Sequence[Path], size: Resize) -> Path:
    return Path(cache_dir) / f"{name}-{size.tag()}-{fingerprint(paths, size)}.npy"


def _warn_failures(failures: dict[str, str]) -> None:
    for path, reason in failures.items():
        warnings.warn(f"{path}: {reason}; it is predicted from a blank image", stacklevel=3)


def build(
    paths: Sequence[Path], size: Resize, out: Path, on_error: str = "raise", workers: int | None = None
):
    """Decode and resize ``paths`` into ``out`` (atomically); returns {path: reason} of blank-filled images."""
    failures: dict[str, str] = {}
    workers = workers or min(os.cpu_count() or 1, 16)

    def one(array: np.ndarray, i: int) -> None:
        try:
            array[i] = resize(decode(paths[i]), size)
        except UserError as exc:
            if on_error != "warn":
                raise
            array[i] = BLANK_VALUE
            failures[str(paths[i])] = str(exc).partition(": ")[2]

    with atomic_path(out) as tmp:
        array = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size.img_h, size.img_w, 3)
        )
        pool = ThreadPoolExecutor(workers)
        try:
            for _ in pool.map(one, itertools.repeat(array), range(len(paths))):
                pass
        finally:
            pool.shutdown(cancel_futures=True)  # on a fatal image, do not decode the rest first
        array.flush()
        del array
        if failures:
            write_json(out.with_suffix(".failures.json"), failures)
    return failures


def _build_if_missing(
    paths: list[Path], size: Resize, cache_dir: Path, name: str, path: Path, on_error: str
) -> None:
    """Build the cache at ``path`` unless it is there, removing stale caches of the same set and size first."""
    if path.is_file():
        return
    for stale in Path(cache_dir).glob(f"{name}-{size.tag()}-*.npy"):
        stale.unlink(missing_ok=True)
        stale.with_suffix(".failures.json").unlink(missing_ok=True)
    print(f"caching {len(paths)} images of {name} at {size.tag()} -> {path}", file=sys.stderr, flush=True)
    build(paths, size, path, on_error)


def cached_images(
    paths: Sequence[Path], size: Resize, cache_dir: Path, name: str, on_error: str = "raise"
) -> np.ndarray:
    """The resized images of ``paths`` as a read-only memory map (built on first use). Under torchrun rank 0
    builds it (when missing) and every rank then meets one barrier, unconditionally: a rank that starts after the
    file exists must still join the barrier rank 0 waits in, or the ranks' collectives no longer match."""
    paths = [Path(p) for p in paths]
    path = cache_path(cache_dir, name, paths, size)
    if not distributed.is_distributed():
        _build_if_missing(paths, size, cache_dir, name, path, on_error)
    else:
        distributed.init_if_needed(distributed.resolve_device())
        if distributed.is_main_process():
            try:
                _build_if_missing(paths, size, cache_dir, name, path, on_error)
            finally:
                distributed.barrier()  # also when the build failed: the other ranks are waiting in it
        else:
            distributed.barrier()  # rank 0 has built (or found) the file by now
            if not path.is_file():
                raise UserError(f"{path}: rank 0 did not build the image cache (see its error)")
    failures_path = path.with_suffix(".failures.json")
    if failures_path.is_file():
        _warn_failures(json.loads(failures_path.read_text()))
    return np.load(path, mmap_mode="r")

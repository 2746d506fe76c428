"""What the models see: ``StreetImages`` (the ``X`` of train and test data) and the torch Dataset over its cache.

``StreetImages`` is a list of image files plus a row selection; indexing it with an index array gives a subset
that shares the same cache, so k-fold subsets never re-decode. ``arrays(size)`` returns the memory-mapped uint8
images of the whole set (built once per content and size, see :mod:`.cache`). ``ImageDataset`` fetches a whole
batch at once (``__getitems__``), applies the albumentations transform per image and returns a dict batch with
``images`` (uint8, N x H x W x 3) and ``labels``; pickling it for worker processes passes the cache's path, not
its contents. ``BoxDataset`` adds each image's digit boxes (for the detector), transformed with the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from competitions.street_char_rec.cache import Resize, cached_images


@dataclass(eq=False)
class StreetImages:
    paths: np.ndarray  # every file of the set (str), in the cache's order
    cache_dir: Path
    name: str  # names the cache file: "labelled" (train+val) or the test folder
    on_error: str = "raise"  # "warn": undecodable images become blank (test sets)
    rows: np.ndarray = field(default=None)  # the selected rows of ``paths``
    #: per file of ``paths`` its digits' boxes, (k, 4) left, top, width, height in the original image (labelled
    #: sets; None for test sets); subsets share it
    boxes: tuple[np.ndarray, ...] | None = None

    def __post_init__(self) -> None:
        self.paths = np.asarray(self.paths).astype(str)
        if self.rows is None:
            self.rows = np.arange(len(self.paths))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx) -> StreetImages:
        rows = self.rows[np.asarray(idx) if not isinstance(idx, slice) else idx]
        return StreetImages(
            self.paths, self.cache_dir, self.name, self.on_error, np.atleast_1d(rows), self.boxes
        )

    def __repr__(self) -> str:
        return f"StreetImages({self.name!r}, {len(self)} of {len(self.paths)} images)"

    def cache_file(self, size: Resize) -> Path:
        """Build the cache if needed; return its path."""
        array = cached_images([Path(p) for p in self.paths], size, self.cache_dir, self.name, self.on_error)
        return Path(array.filename)

    def row_boxes(self) -> list[np.ndarray] | None:
        """The boxes of the selected images (original pixels), or None when the set has none."""
        return None if self.boxes is None else [self.boxes[r] for r in self.rows]

    def arrays(self, size: Resize) -> np.ndarray:
        """The selected images (a copy, N x H x W x 3 uint8)."""
        return np.load(self.cache_file(size), mmap_mode="r")[self.rows]


class ImageDataset(Dataset):
    def __init__(self, cache_file: Path, rows: np.ndarray, labels: np.ndarray | None = None, transform=None):
        self.cache_file = Path(cache_file)
        self.rows = np.asarray(rows)
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.transform = transform
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}  # workers re-open the memory map

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.cache_file, mmap_mode="r")
        return self._images

    def __getitems__(self, indices: list[int]) -> dict:
        indices = np.asarray(indices)
        batch = np.array(self.images[np.sort(self.rows[indices])])  # sorted reads from the memory map
        batch = batch[np.argsort(np.argsort(self.rows[indices]))]  # back to the sampler's order
        if self.transform is not None:
            # draw the augmentation seed from torch's RNG: seeded per worker by the DataLoader, checkpointed by
            # the trainer in the main process, so a resumed run replays the same augmentations
            self.transform.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
            batch = np.stack([self.transform(image=image)["image"] for image in batch])
        out = {"images": torch.from_numpy(np.ascontiguousarray(batch))}
        if self.labels is not None:
            out["labels"] = self.labels[torch.from_numpy(indices)]
        return out

    def __getitem__(self, index: int) -> dict:
        out = self.__getitems__([index])
        return {k: v[0] for k, v in out.items()}


def collate_batch(batch: dict) -> dict:
    """The Dataset already returns a whole batch (``__getitems__``)."""
    return batch


class BoxDataset(ImageDataset):
    """Images with their digits' boxes (x1, y1, x2, y2 in the cached image's pixels) and box classes; an
    albumentations transform built with ``bbox_params`` (pascal_voc, label field ``digits``) moves the boxes with
    the image. Batches hold ``boxes`` (N x B x 4 float) and ``box_labels`` (N x B, -1 padding) beside ``images`` and
    ``labels``."""

    def __init__(
        self, cache_file, rows, labels, boxes: list[np.ndarray], digits: list[np.ndarray], transform=None
    ):
        super().__init__(cache_file, rows, labels, transform)
        self.boxes = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes]
        self.digits = [np.asarray(d, dtype=np.int64) for d in digits]

    def __getitems__(self, indices: list[int]) -> dict:
        indices = np.asarray(indices)
        order = np.argsort(self.rows[indices], kind="stable")
        batch = np.empty((len(indices), *self.images.shape[1:]), dtype=np.uint8)
        batch[order] = self.images[self.rows[indices][order]]  # sorted reads from the memory map
        boxes, digits = [self.boxes[i] for i in indices], [self.digits[i] for i in indices]
        if self.transform is not None:
            self.transform.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))  # see ImageDataset
            images = []
            for k, image in enumerate(batch):
                out = self.transform(image=image, bboxes=boxes[k], digits=digits[k])
                images.append(out["image"])
                boxes[k] = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
                digits[k] = np.asarray(out["digits"], dtype=np.int64).reshape(-1)
            batch = np.stack(images)
        width = max([len(b) for b in boxes] + [1])
        packed_boxes = np.zeros((len(indices), width, 4), dtype=np.float32)
        packed_digits = np.full((len(indices), width), -1, dtype=np.int64)
        for k, (b, d) in enumerate(zip(boxes, digits, strict=True)):
            packed_boxes[k, : len(b)] = b
            packed_digits[k, : len(d)] = d
        out = {
            "images": torch.from_numpy(np.ascontiguousarray(batch)),
            "boxes": torch.from_numpy(packed_boxes),
            "box_labels": torch.from_numpy(packed_digits),
        }
        if self.labels is not None:
            out["labels"] = self.labels[torch.from_numpy(indices)]
        return out

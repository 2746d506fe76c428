"""What the models see: ``StreetImages`` (the ``X`` of train and test data) and the torch Dataset over its cache.

``StreetImages`` is a list of image files plus a row selection; indexing it with an index array gives a subset
that shares the same cache, so k-fold subsets never re-decode. ``arrays(size)`` returns the memory-mapped uint8
images of the whole set (built once per content and size, see :mod:`.cache`). ``ImageDataset`` fetches a whole
batch at once (``__getitems__``), applies the albumentations transform per image and returns a dict batch with
``images`` (uint8, N x H x W x 3) and ``labels``; pickling it for worker processes passes the cache's path, not
its contents.
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

    def __post_init__(self) -> None:
        self.paths = np.asarray(self.paths).astype(str)
        if self.rows is None:
            self.rows = np.arange(len(self.paths))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx) -> StreetImages:
        rows = self.rows[np.asarray(idx) if not isinstance(idx, slice) else idx]
        return StreetImages(self.paths, self.cache_dir, self.name, self.on_error, np.atleast_1d(rows))

    def __repr__(self) -> str:
        return f"StreetImages({self.name!r}, {len(self)} of {len(self.paths)} images)"

    def cache_file(self, size: Resize) -> Path:
        """Build the cache if needed; return its path."""
        array = cached_images([Path(p) for p in self.paths], size, self.cache_dir, self.name, self.on_error)
        return Path(array.filename)

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

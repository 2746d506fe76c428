"""Street contest: end-to-end training throughput vs model-bound throughput, and vs the Datawhale-style pipeline.

One JSON line per figure, all measured in this run on the same device, model and batch size:
- ``model_bound``: the shared trainer on random uint8 batches already on the device (no data pipeline);
- ``ours``: the contest's pipeline (decoded-once memory-mapped cache, albumentations in DataLoader workers that
  fetch whole batches, uint8 host->device, normalisation on the device, pinned memory), ratio to model_bound;
- ``datawhale``: the tutorial's pipeline (PIL decode + torchvision Resize/ColorJitter/RandomRotation/ToTensor/
  Normalize per image, float32 batches), ratio to model_bound;
- ``*_loader_only``: each pipeline alone, no model;
- ``cache_build``: decoding + resizing every image once, images/s.
Each training figure is the second of two epochs (warm-up, worker start and cudnn tuning excluded).

    python bench/street_throughput.py                         # CPU-sized defaults
    python bench/street_throughput.py --device cuda --n-images 30000 --batch-size 256 --workers 16 --bf16 \\
        --channels-last --data-dir data/street_char_rec
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from common.distributed import resolve_device
from common.registry import create_model
from common.trainer import Trainer
from competitions.street_char_rec import labels as codec
from competitions.street_char_rec import models  # noqa: F401  (registers the models)
from competitions.street_char_rec.cache import cached_images
from competitions.street_char_rec.competition import StreetCompetition
from competitions.street_char_rec.synth import write_dataset


class InMemory:
    """A loader-shaped list of ready batches on the device (what the trainer needs of a DataLoader)."""

    sampler = batch_sampler = generator = None

    def __init__(self, batches: list[dict]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


class DatawhaleDataset(Dataset):
    """The tutorial's per-image pipeline: PIL decode and torchvision transforms in ``__getitem__``."""

    def __init__(self, paths, targets, img_h: int, img_w: int):
        from torchvision import transforms as T

        self.paths, self.targets = list(paths), torch.as_tensor(targets)
        self.transform = T.Compose(
            [
                T.Resize((img_h, img_w)),
                T.ColorJitter(0.3, 0.3, 0.2),
                T.RandomRotation(10),
                T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        image = Image.open(self.paths[i]).convert("RGB")
        return {"images": self.transform(image), "labels": self.targets[i]}


def epoch_rate(model, loader, n_images: int, args) -> float:
    """Images/s of the second of two training epochs through the shared trainer."""
    trainer = Trainer(dataclasses.replace(model._trainer_config(), epochs=2, quiet=True))
    trainer.fit(model._build_module(), loader)
    return n_images / trainer.history[1]["seconds"]


def loader_rate(loader, n_images: int) -> float:
    """Images/s of the data pipeline alone (second pass over the loader)."""
    for _ in loader:
        pass
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return n_images / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--img-h", type=int, default=64)
    p.add_argument("--img-w", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--n-images", type=int, default=256, help="training images per epoch")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--data-dir", help="contest files; default: render --n-images demo images in a temp dir")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    common = {"device": str(device), "batch_size": args.batch_size, "n_images": args.n_images}
    common.update(
        backbone=args.backbone, size=f"{args.img_h}x{args.img_w}", bf16=args.bf16, workers=args.workers
    )
    common.update(channels_last=args.channels_last)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.data_dir) if args.data_dir else Path(tmp) / "data"
        if not args.data_dir:
            write_dataset(data_dir, n_train=args.n_images, n_val=0, n_test=0, seed=0)
        data = StreetCompetition().load_train(data_dir)
        rows = np.arange(min(args.n_images, len(data.y)))
        X, y = data.X[rows], data.y[rows]
        n = len(rows)
        model = create_model(
            "resnet",
            backbone=args.backbone,
            img_h=args.img_h,
            img_w=args.img_w,
            batch_size=args.batch_size,
            num_workers=args.workers,
            device=str(device),
            amp="bf16" if args.bf16 else "off",
            channels_last=args.channels_last,
            valid_size=0.0,
        )
        cache_dir = Path(tmp) / "cache"
        X.cache_dir = cache_dir
        t0 = time.perf_counter()
        cached_images([Path(q) for q in X.paths], model._resize(), cache_dir, X.name)  # the one it reads
        build = time.perf_counter() - t0
        print(json.dumps({"figure": "cache_build", "images_per_s": round(len(X.paths) / build, 1), **common}))

        targets = codec.encode(y, model.max_chars)
        n_batches = max(1, n // args.batch_size)
        gen = torch.Generator().manual_seed(0)
        batches = [
            {
                "images": torch.randint(
                    0, 256, (args.batch_size, args.img_h, args.img_w, 3), dtype=torch.uint8, generator=gen
                ).to(device),
                "labels": torch.as_tensor(targets[: args.batch_size]).to(device),
            }
            for _ in range(n_batches)
        ]
        bound = epoch_rate(model, InMemory(batches), n_batches * args.batch_size, args)
        print(json.dumps({"figure": "model_bound", "images_per_s": round(bound, 1), **common}))
        model._encode_targets(y)
        loader = model._make_loader(X, targets, True, torch.Generator().manual_seed(0))
        rate = loader_rate(loader, n_batches * args.batch_size)
        print(json.dumps({"figure": "ours_loader_only", "images_per_s": round(rate, 1), **common}))
        ours = epoch_rate(
            model,
            model._make_loader(X, targets, True, torch.Generator().manual_seed(0)),
            n_batches * args.batch_size,
            args,
        )
        print(
            json.dumps(
                {
                    "figure": "ours",
                    "images_per_s": round(ours, 1),
                    "ratio_to_model_bound": round(ours / bound, 3),
                    **common,
                }
            )
        )
        reference = DataLoader(
            DatawhaleDataset(X.paths[X.rows], targets, args.img_h, args.img_w),
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=args.workers > 0,
        )
        rate = loader_rate(reference, n_batches * args.batch_size)
        print(json.dumps({"figure": "datawhale_loader_only", "images_per_s": round(rate, 1), **common}))
        ref = epoch_rate(model, reference, n_batches * args.batch_size, args)
        print(
            json.dumps(
                {
                    "figure": "datawhale",
                    "images_per_s": round(ref, 1),
                    "ratio_to_model_bound": round(ref / bound, 3),
                    **common,
                }
            )
        )


if __name__ == "__main__":
    main()

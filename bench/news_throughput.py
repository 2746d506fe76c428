"""Training throughput of ``textcnn`` and ``lstm``: end to end (our loader: bucketing, truncation, padding, host
to device) as a share of model-bound throughput (the same model and trainer on random batches of the same shapes
already on the device), measured in the same run. One JSON line per model. ``--repeats N`` times N epochs of each
kind, interleaved, and keeps the fastest of each; on the CPU it also sums each batch's fastest time over the
repeats (``per_batch_min_*``), which other processes on a shared machine disturb much less than whole epochs.

    python bench/news_throughput.py --device cuda --n-docs 50000 --max-len 1024 --batch-size 128   # GPU
    python bench/news_throughput.py --device cpu --n-docs 600 --max-len 256 --batch-size 32        # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from common.registry import create_model
from common.trainer import Trainer
from competitions.news_text_cls.competition import NewsCompetition
from competitions.news_text_cls.models.sequence import passthrough
from competitions.news_text_cls.synth import write_demo


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _Timed:
    """A loader that records each batch's wall time, from asking for it to asking for the next (load + step)."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self.seconds: list[float] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):  # sampler, batch_sampler, generator: what the Trainer reads
        return getattr(self.loader, name)

    def __iter__(self):
        t0 = time.perf_counter()
        for batch in self.loader:
            yield batch
            now = time.perf_counter()
            self.seconds.append(now - t0)
            t0 = now


def _epoch(model, loader, device: torch.device) -> tuple[float, list[float]]:
    """Seconds for one training epoch of a fresh module through the shared Trainer, and each batch's seconds
    (meaningful on the CPU only: on a GPU a batch's work is still queued when the next is asked for)."""
    trainer = Trainer(model._trainer_config())
    module = model._build_module()
    timed = _Timed(loader)
    _sync(device)
    t0 = time.perf_counter()
    trainer.fit(module, timed, None)
    _sync(device)
    return time.perf_counter() - t0, timed.seconds


def measure(name: str, corpus, y: np.ndarray, args, params: dict) -> dict:
    device = torch.device(args.device)
    model = create_model(
        name, epochs=1, batch_size=args.batch_size, max_len=args.max_len, device=args.device, quiet=True,
        num_workers=args.num_workers, **params,
    )  # fmt: skip
    model.vocab_size_ = corpus.max_id() + 3
    model.n_classes_, model.class_weight_ = int(y.max()) + 1, None
    real = model._make_loader(corpus, y, True, None)
    shapes = [(len(b["labels"]), b["input_ids"].shape[1]) for b in real]
    gen = torch.Generator().manual_seed(0)
    fake = [
        {
            "input_ids": torch.randint(1, model.vocab_size_, (bs, width), generator=gen).to(device),
            "lengths": torch.full((bs,), width).to(device),
            "labels": torch.randint(0, model.n_classes_, (bs,), generator=gen).to(device),
        }
        for bs, width in shapes
    ]
    fake_loader = DataLoader(fake, batch_size=None, collate_fn=passthrough)
    _epoch(
        model, DataLoader(fake[: min(5, len(fake))], batch_size=None, collate_fn=passthrough), device
    )  # warm-up
    epochs = {"bound": [], "real": []}
    batches = {"bound": [], "real": []}
    for _ in range(args.repeats):  # interleaved; the fastest epoch of each kind is the least disturbed
        for kind, loader in (("bound", fake_loader), ("real", real)):
            seconds, per_batch = _epoch(model, loader, device)
            epochs[kind].append(seconds)
            batches[kind].append(per_batch)
    bound, end_to_end = min(epochs["bound"]), min(epochs["real"])
    n = len(y)
    steady = {}
    if device.type == "cpu" and args.repeats > 1:
        # each batch at its fastest over the repeats, summed: steadier than the fastest whole epoch when other
        # processes share the CPU (a disturbance only ever adds time); the trainer's per-epoch work is left out
        bound_b, real_b = (float(np.min(batches[k], axis=0).sum()) for k in ("bound", "real"))
        steady = {
            "per_batch_min_end_to_end_docs_per_s": round(n / real_b, 1),
            "per_batch_min_model_bound_docs_per_s": round(n / bound_b, 1),
            "per_batch_min_ratio": round(bound_b / real_b, 3),
        }
    return {
        "figure": "news_throughput", "model": name, "device": str(device), "n_docs": n, "max_len": args.max_len,
        "batch_size": args.batch_size, "amp": model._trainer_config().amp,
        "end_to_end_docs_per_s": round(n / end_to_end, 1), "model_bound_docs_per_s": round(n / bound, 1),
        "ratio": round(bound / end_to_end, 3), **steady, "params": params, "repeats": args.repeats,
        "model_bound_s": [round(t, 2) for t in epochs["bound"]],
        "end_to_end_s": [round(t, 2) for t in epochs["real"]],
    }  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n-docs", type=int, default=600)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument(
        "--repeats", type=int, default=1, help="epochs of each kind, interleaved; the fastest counts"
    )
    p.add_argument("--models", default="textcnn,lstm")
    p.add_argument("--textcnn-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--lstm-set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        write_demo(tmp, args.n_docs, 0, seed=0)
        train = NewsCompetition().load_train(tmp)
    train.X.lengths  # noqa: B018  (parse the ids before timing)
    for name in args.models.split(","):
        params = dict(item.split("=", 1) for item in getattr(args, f"{name}_set"))
        print(json.dumps(measure(name, train.X, train.y, args, params)), flush=True)


if __name__ == "__main__":
    main()

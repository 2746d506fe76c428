"""MLM pretraining throughput (tokens/s) through the real pipeline, as a ratio of the model-bound throughput.

Both runs drive the same BERT config through the shared trainer for ``--steps`` optimizer steps per trainer epoch,
twice (the first epoch is warm-up and not counted):

- ``pipeline``: demo corpus written in the contest's format -> reader -> vocabulary -> packed blocks -> sampler ->
  DataLoader workers -> dynamic masking -> model (exactly what ``pretrain`` runs);
- ``model_bound``: the same number of batches of random ids with a fixed mask, already on the device.

One JSON line per figure. Example (GPU): ``python bench/news_mlm_throughput.py --size small --batch-size 128``;
tiny on CPU: ``python bench/news_mlm_throughput.py --size mini --layers 2 --seq-len 128 --batch-size 8
--steps 5 --device cpu --workers 0``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import BertForMaskedLM, DataCollatorForLanguageModeling

from common.distributed import resolve_device
from common.seed import seed_everything
from common.trainer import Trainer, TrainerConfig
from competitions.news_text_cls import pretrain as pt
from competitions.news_text_cls import tokenizer as tok
from competitions.news_text_cls.pretraining import packing
from competitions.news_text_cls.pretraining.model import MaskedLM, bert_config
from competitions.news_text_cls.synth import write_demo


def _seconds(model: torch.nn.Module, loader: DataLoader, args, device: torch.device) -> float:
    """Seconds of the second of two trainer epochs (the first warms up kernels and workers)."""
    config = TrainerConfig(
        epochs=2, lr=1e-4, device=str(device), amp=args.amp, quiet=True, compile=args.compile
    )
    trainer = Trainer(config)
    trainer.fit(model, loader)
    return trainer.history[-1]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(pt.DEFAULT_LR), default="small")
    parser.add_argument("--layers", type=int, help="override the preset's number of layers")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per timed epoch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="auto")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--data-dir", help="contest files to read (default: demo data generated here)")
    parser.add_argument("--n-docs", type=int, default=5000, help="demo documents when no --data-dir")
    args = parser.parse_args()
    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        data_dir = (
            Path(args.data_dir) if args.data_dir else write_demo(tmp, args.n_docs, args.n_docs // 4, seed=0)
        )
        corpus = pt.read_corpus(data_dir)
        tokenizer = tok.build_tokenizer(
            *(flat for flat, _ in corpus), min_count=2, model_max_length=args.seq_len
        )
        blocks = pt.build_blocks(corpus, tokenizer, args.seq_len)
        prep = time.perf_counter() - started

    def model() -> MaskedLM:
        seed_everything(0)
        config = bert_config(len(tokenizer), args.size, num_layers=args.layers, max_positions=args.seq_len)
        return MaskedLM(BertForMaskedLM(config))

    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    real = packing.train_loader(
        blocks,
        collator,
        args.batch_size,
        args.steps,
        seed=0,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )
    tokens = args.steps * args.batch_size * args.seq_len
    pipeline_s = _seconds(model(), real, args, device)

    rows = np.random.default_rng(0).integers(
        tok.N_SPECIAL, len(tokenizer), size=(args.batch_size, args.seq_len - 2)
    )
    fixed = packing.mask_batch(collator, packing.with_specials(rows))
    fixed = {k: v.to(device) for k, v in fixed.items()}
    bound = DataLoader([fixed] * args.steps, batch_size=None)
    bound_s = _seconds(model(), bound, args, device)

    common = {
        "size": args.size,
        "layers": args.layers,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "amp": args.amp,
        "workers": args.workers,
    }
    print(json.dumps({"figure": "mlm_tokens_per_s_pipeline", "value": tokens / pipeline_s, **common}))
    print(json.dumps({"figure": "mlm_tokens_per_s_model_bound", "value": tokens / bound_s, **common}))
    print(json.dumps({"figure": "mlm_pipeline_over_model_bound", "value": bound_s / pipeline_s, **common}))
    print(json.dumps({"figure": "mlm_data_prep_seconds", "value": prep, "blocks": len(blocks), **common}))


if __name__ == "__main__":
    main()

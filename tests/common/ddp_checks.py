"""One rank of the DDP checks, launched by torchrun on CPU (gloo); writes ``<out>/rank<r>.json``.

- ``accum``: gradient accumulation (grad_accum=4) all-reduces once per optimizer step, not per micro-batch, with
  and without ``torch.compile`` around the DDP wrapper (counted by a DDP communication hook; the compiled case uses
  dynamo's eager backend: the wrapper is the same, without inductor's compile time).
- ``eval``: each rank scores its own shard of the holdout and the gathered logits equal a single-process pass.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.utils.data import DataLoader, TensorDataset

from common import distributed
from common.trainer import Trainer, TrainerConfig
from tests.common.test_trainer import _collate
from tests.common.test_trainer import _Linear as _Net

CALLS = {"allreduce": 0}


def _loader(n: int, batch_size: int, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 4, generator=g) + y[:, None].float()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, collate_fn=_collate)


def _count_allreduces() -> None:
    """Register a counting comm hook on every DistributedDataParallel the trainer builds."""
    original = nn.parallel.DistributedDataParallel.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)

        def hook(state, bucket):
            CALLS["allreduce"] += 1
            return default_hooks.allreduce_hook(None, bucket)

        self.register_comm_hook(None, hook)

    nn.parallel.DistributedDataParallel.__init__ = init


def accum(compiled: bool) -> dict:
    CALLS["allreduce"] = 0
    torch.manual_seed(0)
    cfg = TrainerConfig(epochs=2, lr=0.01, grad_accum=4, device="cpu", quiet=True, compile=compiled)
    trainer = Trainer(cfg)
    trainer.fit(_Net(), _loader(n=128, batch_size=8))  # 16 micro-batches; 8 per rank; 2 steps an epoch
    return {"allreduce": CALLS["allreduce"], "steps": trainer.history[-1]["step"]}


def evaluate() -> dict:
    torch.manual_seed(0)
    model = _Net()
    loader = _loader(n=70, batch_size=8)  # 9 batches: ranks take 5 and 4
    seen = []
    original = loader.collate_fn
    trainer = Trainer(TrainerConfig(device="cpu", quiet=True))
    distributed.init_if_needed(torch.device("cpu"))

    def collate(rows):
        seen.append(len(rows))
        return original(rows)

    loader.collate_fn = collate
    _, logits, labels = trainer.evaluate(model, loader)
    with torch.no_grad():
        local = torch.cat([model(b)["logits"] for b in _loader(n=70, batch_size=8)]).numpy()
    return {"batches_seen": len(seen), "rows": int(len(logits)), "equal": bool(abs(logits - local).max() < 1e-6),
            "labels": int(len(labels))}  # fmt: skip


def main(out: str) -> None:
    torch.set_num_threads(1)
    _count_allreduces()
    original_compile = torch.compile
    torch.compile = functools.partial(original_compile, backend="eager")
    result = {"eval": evaluate(), "plain": accum(False), "compiled": accum(True)}
    Path(out, f"rank{distributed.rank()}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

"""One rank of the DDP test, launched by torchrun: fit ``toy_mlp`` through the shared trainer on CPU (gloo) with
``work_dir=<out>/rank<r>``, then save this rank's final weights to ``<out>/weights_rank<r>.pt``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from common import distributed
from common.registry import create_model
from tests.common import toy  # noqa: F401  (registers toy_mlp)


def main(out: str) -> None:
    torch.set_num_threads(1)
    rank = distributed.rank()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    X = (rng.normal(0, 1.5, (96, 4)) + y[:, None]).astype(np.float32)
    model = create_model("toy_mlp", epochs=3, batch_size=8, device="cpu", quiet=True, ema_decay=0.5)
    model.fit(X, y, work_dir=Path(out) / f"rank{rank}")
    assert dist.is_initialized() and dist.get_world_size() == 2
    torch.save(model.module_.state_dict(), Path(out) / f"weights_rank{rank}.pt")
    torch.save(torch.from_numpy(model.predict_proba(X)), Path(out) / f"proba_rank{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

"""Fit ``toy_mlp`` in a child process; with ``--kill-after E`` the process SIGKILLs itself after epoch E's
checkpoint (a crash between epochs). Writes the final weights to ``<out>/weights.pt`` and the epochs it ran to
``<out>/epochs.txt``."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import torch

from tests.common.test_resume import fit_toy


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--kill-after", type=int, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def on_epoch(epoch: int, record: dict) -> None:
        with open(out / "epochs.txt", "a") as fh:
            fh.write(f"{epoch}\n")
        if epoch == args.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    model = fit_toy(args.work_dir, [on_epoch])
    torch.save(model.module_.state_dict(), out / "weights.pt")


if __name__ == "__main__":
    main()

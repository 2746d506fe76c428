"""Street contest: the repo's models against the Datawhale tutorial recipe on a held-out bench set.

One JSON line per run: method, test whole-string accuracy (against ``test_labels.json``), wall seconds and the
process's CPU seconds (the machine may be shared: CPU seconds are the steadier figure), and the exact command.
The data is a folder in the contest's layout with ``test_labels.json`` beside it (``bench/street_bench_data.py``).
Every figure covers training and predicting the test images; for the repo's models it is the whole ``train``
command (image cache included), run as a subprocess with the official split.

    python bench/street_models.py --data-dir data/street_bench reference --epochs 10
    python bench/street_models.py --data-dir data/street_bench repo --model resnet --set epochs=10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.street_bench_data import char_score, score  # noqa: E402
from bench.street_references import datawhale_resnet18  # noqa: E402


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _n_train(data_dir: Path) -> int:
    """Training images of the official split (``mchar_train.json``'s entries)."""
    return len(json.loads((Path(data_dir) / "mchar_train.json").read_text(encoding="utf-8")))


def run_reference(data_dir: Path, epochs: int, num_workers: int, seed: int) -> dict:
    cpu0 = _cpu_seconds(resource.RUSAGE_SELF) + _cpu_seconds(resource.RUSAGE_CHILDREN)
    result = datawhale_resnet18(data_dir, epochs=epochs, num_workers=num_workers, seed=seed, log=_log)
    cpu = _cpu_seconds(resource.RUSAGE_SELF) + _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0
    return {
        "method": f"datawhale resnet18 {epochs} ep",
        "test_accuracy": round(score(data_dir, result["predictions"]), 4),
        "test_char_accuracy": round(char_score(data_dir, result["predictions"]), 4),
        "seconds": round(result["seconds"], 1),
        "cpu_seconds": round(cpu, 1),
        "trained_images_per_s": round(_n_train(data_dir) * epochs / max(result["seconds"], 1e-9), 1),
        "best_epoch": result["best_epoch"],
        "val_acc": [h["val_acc"] for h in result["history"]],
        "train_loss": [h["train_loss"] for h in result["history"]],
    }


def run_repo(
    data_dir: Path, model: str, sets: list[str], run_dir: Path | None, seed: int, threads: int | None
) -> dict:
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    tmp = None
    if run_dir is None:
        tmp = tempfile.mkdtemp(prefix="street-bench-")
        run_dir = Path(tmp) / model
    cmd = [sys.executable, "-m", "competitions.street_char_rec", "train", "--model", model]
    cmd += ["--data-dir", str(data_dir), "--run-dir", str(run_dir), "--seed", str(seed), "--quiet", "--force"]
    cmd += ["--submissions-dir", str(Path(run_dir) / "archive"), "--folds-dir", str(Path(run_dir) / "folds")]
    cmd += ["--set", "split=official"] + [a for s in sets for a in ("--set", s)]
    cpu0 = _cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    frame = pd.read_csv(Path(run_dir) / "submission.csv", dtype=str)
    predictions = dict(zip(frame["file_name"], frame["file_code"], strict=True))
    logs = sorted(Path(run_dir).glob("fold*/log.jsonl"))
    history = [json.loads(line) for line in logs[0].read_text().splitlines()] if logs else []
    cv = json.loads((Path(run_dir) / "cv.json").read_text())
    result = {
        "method": f"repo {model} " + " ".join(sets),
        "test_accuracy": round(score(data_dir, predictions), 4),
        "test_char_accuracy": round(char_score(data_dir, predictions), 4),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "official_val": cv.get("score"),
        "inner_holdout": [round(h["valid_score"], 3) for h in history if "valid_score" in h],
        "epoch_seconds": [round(h["seconds"], 1) for h in history],
        "train_loss": [round(h["train_loss"], 4) for h in history],
        "trained_images_per_s": round(_n_train(data_dir) * len(history) / max(seconds, 1e-9), 1),
        "command": shlex.join(["python", *cmd[1:]]),
    }
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (OMP_NUM_THREADS) for every method; 1 makes CPU seconds comparable on a busy machine",
    )
    sub = p.add_subparsers(dest="method", required=True)
    ref = sub.add_parser("reference", help="the Datawhale tutorial recipe")
    ref.add_argument("--epochs", type=int, default=10)
    ref.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (default 0: one process)")
    repo = sub.add_parser("repo", help="a model of this repository through its train command")
    repo.add_argument("--model", required=True)
    repo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    repo.add_argument(
        "--run-dir", type=Path, default=None, help="keep the run here (default: a temporary folder)"
    )
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.method == "reference":
        result = run_reference(args.data_dir, args.epochs, args.num_workers, args.seed)
        result["command"] = shlex.join(
            ["bench/street_models.py", *(argv if argv is not None else sys.argv[1:])]
        )
    else:
        result = run_repo(args.data_dir, args.model, args.set, args.run_dir, args.seed, args.threads)
    result["threads"] = args.threads
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Every news model and the three reference methods on one bench set: test macro-F1, CV, seconds, peak memory.

A bench set is a contest-format folder with the test file's labels beside it (``train_set.csv``, ``test_a.csv``,
``test_labels.csv``): ``bench/news_bench_data.py`` makes the real-text ones, ``python -m competitions.news_text_cls
synth`` the generated demo data (it writes ``test_labels.csv`` too). Methods, each run as its own process:

- a repo model (``tfidf``, ``fasttext``, ``textcnn``, ``lstm``, ``bert``): the CLI exactly as a user runs it,
  ``python -m competitions.news_text_cls train --model M --data-dir D --folds 5 ...``; every model of one bench run
  shares one folds file (``--folds-dir``), so their CV scores come from the same folds. Its ``submission.csv`` (the
  fold models' averaged test probabilities) is scored on ``test_labels.csv``; ``cv`` is the OOF score
  (``cv.json``). ``bert`` is first MLM-pretrained from scratch on the set's train + test text (no labels) at a size
  a CPU can afford (:data:`BERT_PRETRAIN`: 2 layers x 128, 128-id blocks, 300 steps of 32 blocks), then fine-tuned
  per fold with :data:`BERT_FINETUNE`; its seconds include the pretraining.
- a reference (``datawhale_ridge``, ``linearsvc_bigrams``, ``fasttext_lib``, see :mod:`bench.news_references`):
  one fit on every training row, one prediction of the test file (no folds, so no CV).
- ``fit:MODEL``: one fit of a repo model on every training row through the API (its own inner holdout as
  configured), the references' protocol.

Each method prints one JSON line: ``macro_f1`` (test), ``cv`` (repo models), ``wall_s`` and ``cpu_s`` (the whole
process: start-up, reading the files, training, predicting; CPU = user + system seconds of the process and its
children), ``peak_rss_mb`` (the process's peak resident memory, from ``os.wait4``), the protocol and the exact
command. ``--threads N`` sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (torch and BLAS) and the fastText library's
threads for every method; on a shared machine ``--threads 1`` keeps CPU seconds comparable (two torch threads on
two busy cores spent 3x the CPU seconds of one in our measurements).

    python bench/news_models.py --data-dir data/bench_reviews --threads 1
    python bench/news_models.py --data-dir data/bench_topics --methods tfidf,textcnn --set textcnn:epochs=8
    python bench/news_models.py --data-dir data/bench_reviews --methods fasttext_lib,fit:fasttext --set lr=0.2

``--set KEY=VALUE`` goes to every repo model, ``--set MODEL:KEY=VALUE`` to one (``pretrain:KEY=VALUE`` to BERT's
pretraining). A data folder without ``test_labels.csv`` prints a ``skipped`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.news_references import REFERENCES  # noqa: E402

MODELS = ("tfidf", "fasttext", "textcnn", "lstm", "bert")
METHODS = (*REFERENCES, *MODELS)
#: BERT's MLM pretraining at a CPU's size (keys of the pretrain verb's config)
BERT_PRETRAIN = (
    "size=mini", "num_layers=2", "hidden_size=128", "num_heads=2", "intermediate_size=512", "block_len=128",
    "max_steps=300", "batch_size=32", "eval_blocks=64", "eval_every_steps=100", "checkpoint_every_steps=100",
    "num_workers=0",
)  # fmt: skip
#: fine-tuning of that encoder: up to two 128-id segments (head and tail) per document
BERT_FINETUNE = ("segment_len=128", "segments=2", "epochs=2", "batch_size=32")


def model_sets(sets: list[str], model: str) -> list[str]:
    """The ``--set`` items for ``model``: unprefixed ones and those prefixed ``model:``."""
    out = []
    for item in sets:
        prefix, sep, rest = item.partition(":")
        if sep and "=" not in prefix:
            if prefix == model:
                out.append(rest)
        else:
            out.append(item)
    return out


def measured(cmd: list[str], env: dict, log: Path) -> dict:
    """Run ``cmd`` to completion (output to ``log``): exit code, wall and CPU seconds, peak RSS in MB."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": proc.returncode,
        "wall_s": time.perf_counter() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }


def combine(parts: list[dict]) -> dict:
    """Processes run one after the other: seconds add up, the peak is the largest."""
    return {
        "rc": next((p["rc"] for p in parts if p["rc"]), 0),
        "wall_s": sum(p["wall_s"] for p in parts),
        "cpu_s": sum(p["cpu_s"] for p in parts),
        "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
    }


def commands(method: str, data_dir: Path, root: Path, args) -> tuple[list[list[str]], Path, str]:
    """The process(es) of ``method``, the CSV of test labels they write, and the protocol."""
    py = sys.executable
    out = root / method.replace(":", "-")
    if method in REFERENCES or method.startswith("fit:"):
        cmd = [py, str(Path(__file__).resolve()), "--data-dir", str(data_dir), "--predict", method, "--out",
               str(out / "submission.csv"), "--threads", str(args.threads or 0)]  # fmt: skip
        if method.startswith("fit:"):
            for item in model_sets(args.set, method.split(":", 1)[1]):
                cmd += ["--set", item]
        return [cmd], out / "submission.csv", "one fit"
    cli = [py, "-m", "competitions.news_text_cls"]
    train = [*cli, "train", "--model", method, "--data-dir", str(data_dir), "--run-dir", str(out), "--folds",
             str(args.folds), "--folds-dir", str(root / "folds"), "--submissions-dir", str(root / "submissions"),
             "--quiet", "--force"]  # fmt: skip
    sets = model_sets(args.set, method)
    cmds = []
    if method == "bert":
        pretrained = root / "bert-pretrained"
        pre = [*cli, "pretrain", "--data-dir", str(data_dir), "--out", str(pretrained), "--quiet", "--force"]
        for item in (*BERT_PRETRAIN, *model_sets(args.set, "pretrain")):
            pre += ["--set", item]
        cmds.append(pre)
        sets = [*BERT_FINETUNE, f"pretrained={pretrained}", *sets]
    for item in sets:
        train += ["--set", item]
    cmds.append(train)
    return cmds, out / "submission.csv", f"{args.folds}-fold CLI"


def run_method(method: str, data_dir: Path, root: Path, args) -> dict:
    cmds, submission, protocol = commands(method, data_dir, root, args)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    parts = []
    for i, cmd in enumerate(cmds):
        parts.append(measured(cmd, env, root / "logs" / f"{method.replace(':', '-')}-{i}.log"))
        if parts[-1]["rc"]:
            break
    usage = combine(parts)
    result: dict = {"protocol": protocol}
    if usage["rc"]:
        log = (root / "logs" / f"{method.replace(':', '-')}-{len(parts) - 1}.log").read_text(errors="replace")
        result["error"] = f"exit {usage['rc']}: {log.strip()[-600:]}"
    else:
        from common.metrics import macro_f1

        truth = pd.read_csv(data_dir / "test_labels.csv")["label"].to_numpy()
        pred = pd.read_csv(submission)["label"].to_numpy()
        result["macro_f1"] = round(macro_f1(truth, pred), 4)
        cv = submission.parent / "cv.json"
        if cv.is_file():
            result["cv"] = round(float(json.loads(cv.read_text())["score"]), 4)
    result.update(
        wall_s=round(usage["wall_s"], 1), cpu_s=round(usage["cpu_s"], 1),
        peak_rss_mb=round(usage["peak_rss_mb"]), threads=args.threads,
        command=" && ".join(shlex.join(["python", *c[1:]]) for c in cmds).replace(str(REPO) + "/", ""),
    )  # fmt: skip
    return result


# ------------------------------------------------------------------------------------------------ one fit
def predict_once(method: str, data_dir: Path, out: Path, threads: int, sets: list[str]) -> None:
    """The ``--predict`` worker: fit ``method`` (a reference or ``fit:MODEL``) on every training row and write its
    test labels to ``out`` (a CSV with a ``label`` column)."""
    from competitions.news_text_cls.data import read_test, read_train

    if method.startswith("fit:"):
        import dataclasses

        from common.config import build_config, parse_overrides
        from common.registry import create_model, get_model_entry
        from competitions.news_text_cls.competition import NewsCompetition

        model = method.split(":", 1)[1]
        comp = NewsCompetition()
        comp.import_models()
        params = dataclasses.asdict(build_config(get_model_entry(model).config_cls, parse_overrides(sets)))
        if "trainer" in params:
            params["trainer"]["quiet"] = True
        train, test = comp.load_train(data_dir), comp.load_test(data_dir)
        pred = create_model(model, **params).fit(train.X, train.y).predict(test.X)
    else:
        train, y = read_train(data_dir / "train_set.csv")
        test = read_test(data_dir / "test_a.csv")
        kwargs = {"threads": threads} if method == "fasttext_lib" and threads else {}
        pred = REFERENCES[method](list(train.texts), y, list(test.texts), **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"label": np.asarray(pred, dtype=np.int64)}).to_csv(out, index=False)


# ------------------------------------------------------------------------------------------------ CLI
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", nargs="+", default=["data/bench_reviews", "data/bench_topics"])
    p.add_argument("--methods", nargs="+", default=list(METHODS),
                   help=f"comma or space separated; default all: {','.join(METHODS)}; also fit:MODEL")  # fmt: skip
    p.add_argument("--folds", type=int, default=5)
    p.add_argument(
        "--set", action="append", default=[], metavar="[MODEL:]KEY=VALUE", help="repo model params"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch/BLAS threads of every method (default: all)"
    )
    p.add_argument("--run-root", default=None, help="where runs and logs go (default: a temporary folder)")
    p.add_argument("--predict", help=argparse.SUPPRESS)  # worker: one fit of a reference or fit:MODEL
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.predict:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        predict_once(args.predict, Path(args.data_dir[0]), Path(args.out), args.threads, args.set)
        return
    methods = [m for item in args.methods for m in item.split(",") if m]
    unknown = [m for m in methods if m not in METHODS and not (m.startswith("fit:") and m[4:] in MODELS)]
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)} or fit:MODEL")
    for data_dir in map(Path, args.data_dir):
        if not (data_dir / "test_labels.csv").is_file():
            print(json.dumps({"figure": "news_models", "data": str(data_dir), "skipped": "no test_labels.csv "
                              "there; make a set with bench/news_bench_data.py or the synth verb"}), flush=True)  # fmt: skip
            continue
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(args.run_root) / data_dir.name if args.run_root else Path(tmp)
            for method in methods:
                result = run_method(method, data_dir.resolve(), root.resolve(), args)
                line = {"figure": "news_models", "data": data_dir.name, "method": method, **result}
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()

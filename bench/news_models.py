"""Test macro-F1 and seconds of the reference methods and the repo's models on a bench set from
``bench/news_bench_data.py`` (``train_set.csv``, ``test_a.csv``, ``test_labels.csv``).

References (:mod:`bench.news_references`) fit once on the training file and predict the test file. Repo models run
through the CLI exactly as a user would (``python -m competitions.news_text_cls train --model M --data-dir D
--run-dir R --folds 5 --quiet [--set k=v ...]``), and their ``R/submission.csv`` (the fold models' averaged test
probabilities) is scored against ``test_labels.csv``; the CV score from ``R/cv.json`` is printed beside it.
``fit:MODEL`` fits one repo model through the API instead (``create_model(MODEL, **params).fit(train)``: its own
inner holdout as configured, no folds) and predicts the test file: the same protocol as the references, at a fifth
of the CLI's cost. Seconds: the fit + predict (reading the files excluded), or the CLI's whole wall time. One JSON
line per method.

    python bench/news_models.py --data-dir data/bench_topics --methods datawhale_ridge,linearsvc_bigrams,fasttext_lib
    python bench/news_models.py --data-dir data/bench_topics --methods repo:tfidf repo:textcnn --set epochs=8
    python bench/news_models.py --data-dir data/bench_reviews --methods fit:fasttext fit:textcnn --set lr=0.01
    python bench/news_models.py     # the references on data/bench_reviews and data/bench_topics (`make bench`)

A data folder that is missing (``bench/news_bench_data.py`` makes it) prints a ``skipped`` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.news_references import REFERENCES  # noqa: E402
from common.metrics import macro_f1  # noqa: E402
from competitions.news_text_cls.data import read_test, read_train  # noqa: E402


def test_labels(data_dir: Path) -> np.ndarray:
    return pd.read_csv(data_dir / "test_labels.csv")["label"].to_numpy()


def run_reference(name: str, data_dir: Path) -> dict:
    train, y = read_train(data_dir / "train_set.csv")
    test = read_test(data_dir / "test_a.csv")
    t0 = time.perf_counter()
    pred = REFERENCES[name](list(train.texts), y, list(test.texts))
    seconds = time.perf_counter() - t0
    return {"macro_f1": round(macro_f1(test_labels(data_dir), pred), 4), "seconds": round(seconds, 1)}


def run_fit(model: str, data_dir: Path, sets: list[str]) -> dict:
    from common.config import build_config, parse_overrides
    from common.registry import create_model, get_model_entry
    from competitions.news_text_cls.competition import NewsCompetition

    comp = NewsCompetition()
    comp.import_models()
    params = dataclasses.asdict(build_config(get_model_entry(model).config_cls, parse_overrides(sets)))
    train, test = comp.load_train(data_dir), comp.load_test(data_dir)
    t0 = time.perf_counter()
    if "quiet" in params:
        params["quiet"] = True
    estimator = create_model(model, **params).fit(train.X, train.y)
    pred = estimator.predict(test.X)
    seconds = time.perf_counter() - t0
    history = [
        [h["epoch"], round(h["train_loss"], 4), h.get("valid_score")]
        for h in getattr(estimator, "history_", [])
    ]
    return {"macro_f1": round(macro_f1(test_labels(data_dir), pred), 4), "seconds": round(seconds, 1),
            "history": history}  # fmt: skip


def run_repo(model: str, data_dir: Path, run_dir: Path, folds: int, sets: list[str]) -> dict:
    cmd = [sys.executable, "-m", "competitions.news_text_cls", "train", "--model", model, "--data-dir",
           str(data_dir), "--run-dir", str(run_dir), "--folds", str(folds), "--quiet", "--force",
           "--folds-dir", str(run_dir.parent / "folds"), "--submissions-dir", str(run_dir.parent / "subs")]  # fmt: skip
    for item in sets:
        cmd += ["--set", item]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    pred = pd.read_csv(run_dir / "submission.csv")["label"].to_numpy()
    cv = json.loads((run_dir / "cv.json").read_text())
    return {
        "macro_f1": round(macro_f1(test_labels(data_dir), pred), 4),
        "cv": round(float(cv["score"]), 4),
        "seconds": round(seconds, 1),
        "command": " ".join(cmd[1:]),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", nargs="+", default=["data/bench_reviews", "data/bench_topics"])
    p.add_argument("--methods", nargs="+", default=["datawhale_ridge", "linearsvc_bigrams", "fasttext_lib"],
                   help="reference names, repo:MODEL (CLI, k folds) or fit:MODEL (one fit), comma or space separated")  # fmt: skip
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="params of repo models")
    p.add_argument("--run-root", default=None, help="where repo runs go (default: a temporary folder)")
    p.add_argument("--tag", default="", help="a label printed with each line")
    args = p.parse_args(argv)
    methods = [m for item in args.methods for m in item.split(",") if m]
    for data_dir in map(Path, args.data_dir):
        if not (data_dir / "test_labels.csv").is_file():
            print(json.dumps({"figure": "news_models", "data": str(data_dir), "skipped": "no bench set there; "
                              "make it with bench/news_bench_data.py"}), flush=True)  # fmt: skip
            continue
        run_set(data_dir, methods, args)


def run_set(data_dir: Path, methods: list[str], args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.run_root) if args.run_root else Path(tmp)
        for method in methods:
            base = {"figure": "news_models", "data": data_dir.name, "method": method, "tag": args.tag}
            if method.startswith("fit:"):
                result = {**run_fit(method.split(":", 1)[1], data_dir, args.set), "params": args.set}
            elif method.startswith("repo:"):
                model = method.split(":", 1)[1]
                result = run_repo(model, data_dir, root / f"{data_dir.name}-{model}", args.folds, args.set)
                result["params"] = args.set
            else:
                try:
                    result = run_reference(method, data_dir)
                except ImportError as exc:  # fasttext_lib without `pip install fasttext`
                    result = {"skipped": f"{exc}; install the bench-only extra"}
            print(json.dumps({**base, **result}), flush=True)


if __name__ == "__main__":
    main()

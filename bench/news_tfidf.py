"""``tfidf`` 5-fold end to end, old and new vectoriser side by side, and the Datawhale tutorial's baseline.

Methods, each run in its own subprocess so its peak RSS is its own (``ru_maxrss`` of that process, data loading
and imports included):

- ``tfidf_ids``: our ``tfidf`` with its default vectoriser (numpy over integer n-gram codes, ``vectorizer=ids``);
- ``tfidf_sklearn``: the same model with scikit-learn's ``TfidfVectorizer`` (``vectorizer=sklearn``, the old one);
- ``datawhale_ridge``: ``TfidfVectorizer(ngram_range=(1, 3), max_features=3000)`` fitted once on the training
  text (as the tutorial does), then ``RidgeClassifier()`` per fold.

Our two go through ``common.cv.run_folds`` into a run store (vocabulary fitted once on train+test text, a
classifier per fold, each fold's model written as ``model.skops``); all predict the OOF rows and the test file on
the same folds. ``seconds`` excludes reading the files. For ours, the size of fold 0's ``model.skops``, the
seconds to load it back (trusted types only) and the types it holds beside scikit-learn's. One JSON line per
method, then a ``compare`` line (new vs old). Demo data is generated with ``synth`` when ``--data-dir`` has no ``train_set.csv``.

    python bench/news_tfidf.py --data-dir data/news_full --n-train 200000 --n-test 50000 --skip-reference
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("tfidf_sklearn", "tfidf_ids", "datawhale_ridge")


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _reference(train, test, folds, score) -> float:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import RidgeClassifier

    from common import cv

    vec = TfidfVectorizer(ngram_range=(1, 3), max_features=3000)
    X = vec.fit_transform(train.X.texts)
    X_test = vec.transform(test.X.texts)
    oof = np.zeros((len(train.y), len(np.unique(train.y))), dtype=np.float32)
    for k in cv.fold_numbers(folds):
        clf = RidgeClassifier().fit(X[folds != k], train.y[folds != k])
        oof[folds == k] = clf.decision_function(X[folds == k])
        clf.decision_function(X_test)
    return score(train.y, oof)


def skops_figures(fold_dir: Path) -> dict:
    """Size of a fold's stored model (``model.skops``, written by the run), seconds to load it through
    :func:`common.persist.load` (trusted types only), and the types it holds beside scikit-learn's."""
    import skops.io as sio

    from common import persist

    path = fold_dir / persist.SKOPS
    t0 = time.perf_counter()
    persist.load(fold_dir)
    load_s = time.perf_counter() - t0
    return {
        "skops_mb": round(path.stat().st_size / 2**20, 2),
        "skops_load_s": round(load_s, 2),
        "skops_types": sorted(t for t in sio.get_untrusted_types(file=path) if not t.startswith("sklearn.")),
    }


def run_one(method: str, data_dir: Path, n_folds: int, seed: int, params: dict) -> dict:
    """Load the data, run ``method`` on every fold, return its JSON figures (in this process)."""
    from common import cv
    from common.folds import make_folds
    from common.registry import create_model
    from common.store import RunStore
    from competitions.news_text_cls.competition import NewsCompetition

    comp = NewsCompetition()
    comp.import_models()
    t0 = time.perf_counter()
    train, test = comp.load_train(data_dir), comp.load_test(data_dir)
    load_s = time.perf_counter() - t0
    folds = make_folds(train.ids, train.strata, n_folds, seed)["fold"].to_numpy()
    out = {"figure": "news_tfidf", "method": method, "n_train": len(train.y), "n_test": len(test.X)}
    out["folds"] = n_folds
    extra = {}
    started = time.perf_counter()
    if method == "datawhale_ridge":
        f1 = _reference(train, test, folds, comp.score)
        seconds = time.perf_counter() - started
    else:
        params = {**params, "vectorizer": method.removeprefix("tfidf_")}
        out["params"] = params
        with tempfile.TemporaryDirectory() as run_dir:
            store = RunStore(run_dir)
            cv.run_folds(create_model("tfidf", **params), train, folds, store, comp, test=test)
            f1 = cv.merge(store, train, folds, comp)["score"]
            seconds = time.perf_counter() - started  # includes writing each fold's model.skops
            peak = _peak_rss_mb()
            extra = skops_figures(store.fold_dir(0))
        out["peak_rss_mb"] = peak
    return {**out, "macro_f1": round(f1, 5), "seconds": round(seconds, 1), "load_seconds": round(load_s, 1),
            "peak_rss_mb": out.get("peak_rss_mb", _peak_rss_mb()), **extra}  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="data/news_bench")
    p.add_argument("--n-train", type=int, default=20000, help="rows to generate when the data is absent")
    p.add_argument("--n-test", type=int, default=5000)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a param of our tfidf (both)"
    )
    p.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}"
    )
    p.add_argument("--skip-reference", action="store_true", help="leave out datawhale_ridge")
    # internal: one method in this process
    p.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    data_dir = Path(args.data_dir)
    params = dict(item.split("=", 1) for item in args.set)
    if args.one:
        result = run_one(args.one, data_dir, args.folds, args.seed, params)
        print(json.dumps(result), flush=True)
        return
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    if args.skip_reference and "datawhale_ridge" in methods:
        methods.remove("datawhale_ridge")
    if not (data_dir / "train_set.csv").is_file():
        from competitions.news_text_cls.synth import write_demo

        t0 = time.perf_counter()
        write_demo(data_dir, args.n_train, args.n_test, seed=0)
        print(json.dumps({"figure": "news_synth", "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    results, failed = {}, []
    for method in methods:
        cmd = [sys.executable, os.path.abspath(__file__), "--data-dir", str(data_dir), "--one", method]
        cmd += ["--folds", str(args.folds), "--seed", str(args.seed)]
        cmd += [f"--set={item}" for item in args.set]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        # e.g. killed for memory: say so, go on with the other methods, fail at the end
        if proc.returncode != 0:
            print(json.dumps({"figure": "news_tfidf", "method": method, "error": f"exit {proc.returncode}"}))
            failed.append(method)
            continue
        results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(results[method]), flush=True)
    if "tfidf_ids" in results and "tfidf_sklearn" in results:
        new, old = results["tfidf_ids"], results["tfidf_sklearn"]
        print(
            json.dumps(
                {
                    "figure": "news_tfidf",
                    "method": "compare",
                    "f1_gain": round(new["macro_f1"] - old["macro_f1"], 5),
                    "speedup": round(old["seconds"] / new["seconds"], 2),
                    "peak_rss_ratio": round(new["peak_rss_mb"] / old["peak_rss_mb"], 3),
                }
            ),
            flush=True,
        )
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

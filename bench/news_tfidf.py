"""Our ``tfidf`` 5-fold end to end vs the Datawhale tutorial's TF-IDF + RidgeClassifier, same data, same folds.

The reference: ``TfidfVectorizer(ngram_range=(1, 3), max_features=3000)`` fitted once on the training text (as
the tutorial does), then ``RidgeClassifier()`` per fold. Ours: ``create_model("tfidf")`` through
``common.cv.run_folds`` (vocabulary fitted once on train+test text, a classifier per fold). Both predict the OOF
rows and the test file; seconds exclude reading the files (the same for both). One JSON line per model, then the
ratios. Demo data is generated with ``synth`` when ``--data-dir`` has no ``train_set.csv``.

    python bench/news_tfidf.py --data-dir data/news_full --n-train 200000 --n-test 50000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import RidgeClassifier

from common import cv
from common.folds import make_folds
from common.registry import create_model
from competitions.news_text_cls.competition import NewsCompetition
from competitions.news_text_cls.synth import write_demo


def reference(train, test, folds: np.ndarray, score) -> tuple[float, float]:
    started = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 3), max_features=3000)
    X = vec.fit_transform(train.X.texts)
    X_test = vec.transform(test.X.texts)
    oof = np.zeros((len(train.y), len(np.unique(train.y))), dtype=np.float32)
    for k in cv.fold_numbers(folds):
        clf = RidgeClassifier().fit(X[folds != k], train.y[folds != k])
        oof[folds == k] = clf.decision_function(X[folds == k])
        clf.decision_function(X_test)
    return score(train.y, oof), time.perf_counter() - started


def ours(train, test, folds: np.ndarray, comp: NewsCompetition, params: dict) -> tuple[float, float]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        cv.run_folds(create_model("tfidf", **params), train, folds, run_dir, comp.score, test=test)
        summary = cv.merge(run_dir, train, folds, comp.score)
    return summary["score"], time.perf_counter() - started


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="data/news_bench")
    p.add_argument("--n-train", type=int, default=20000, help="rows to generate when the data is absent")
    p.add_argument("--n-test", type=int, default=5000)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a param of our tfidf")
    p.add_argument("--skip-reference", action="store_true")
    args = p.parse_args(argv)
    data_dir = Path(args.data_dir)
    if not (data_dir / "train_set.csv").is_file():
        t0 = time.perf_counter()
        write_demo(data_dir, args.n_train, args.n_test, seed=0)
        print(json.dumps({"figure": "news_synth", "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    comp = NewsCompetition()
    comp.import_models()
    t0 = time.perf_counter()
    train, test = comp.load_train(data_dir), comp.load_test(data_dir)
    base = {"figure": "news_tfidf", "n_train": len(train.y), "n_test": len(test.X), "folds": args.folds}
    print(json.dumps({**base, "model": "load", "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    folds = make_folds(train.ids, train.strata, args.folds, args.seed)["fold"].to_numpy()
    params = dict(item.split("=", 1) for item in args.set)
    f1, sec = ours(train, test, folds, comp, params)
    print(
        json.dumps(
            {
                **base,
                "model": "ours_tfidf",
                "params": params,
                "macro_f1": round(f1, 5),
                "seconds": round(sec, 1),
            }
        ),
        flush=True,
    )
    if args.skip_reference:
        return
    ref_f1, ref_sec = reference(train, test, folds, comp.score)
    print(
        json.dumps(
            {**base, "model": "datawhale_ridge", "macro_f1": round(ref_f1, 5), "seconds": round(ref_sec, 1)}
        ),
        flush=True,
    )
    print(
        json.dumps(
            {**base, "model": "ratio", "f1_gain": round(f1 - ref_f1, 5), "speedup": round(ref_sec / sec, 2)}
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

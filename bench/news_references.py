"""Reference methods for the news bench sets, as functions: ``method(train_texts, train_labels, test_texts)`` returns
the predicted test labels. Texts are the contest's strings of space-separated ids.

- :func:`datawhale_ridge`: the Datawhale tutorial's baseline, ``TfidfVectorizer(ngram_range=(1, 3),
  max_features=3000)`` with the default token pattern (which, as in the tutorial, skips one-digit ids) and
  ``RidgeClassifier()``.
- :func:`linearsvc_bigrams`: a plain ``LinearSVC()`` on 1-2-gram TF-IDF over every id (``token_pattern=r"\\S+"``).
- :func:`fasttext_lib`: the fastText library with the tutorial's settings (``lr=1.0, wordNgrams=2, epoch=25,
  loss="hs", minCount=1``); ``pip install fasttext-numpy2`` (the same library built for numpy 2; a bench-only
  extra).

Each fits on the training texts only (no test text, no folds): one model, one prediction of the test file.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import RidgeClassifier
from sklearn.svm import LinearSVC


def datawhale_ridge(train_texts, train_labels, test_texts) -> np.ndarray:
    vec = TfidfVectorizer(ngram_range=(1, 3), max_features=3000)
    clf = RidgeClassifier().fit(vec.fit_transform(train_texts), train_labels)
    return clf.predict(vec.transform(test_texts))


def linearsvc_bigrams(train_texts, train_labels, test_texts) -> np.ndarray:
    vec = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"\S+", dtype=np.float32)
    clf = LinearSVC(random_state=0).fit(vec.fit_transform(train_texts), train_labels)
    return clf.predict(vec.transform(test_texts))


def fasttext_lib(
    train_texts, train_labels, test_texts, *, lr: float = 1.0, word_ngrams: int = 2, epoch: int = 25,
    loss: str = "hs", threads: int = 2, seed: int = 0,
) -> np.ndarray:  # fmt: skip
    import fasttext

    fd, path = tempfile.mkstemp(suffix=".txt", prefix="fasttext-train-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for label, text in zip(train_labels, train_texts, strict=True):
                fh.write(f"__label__{int(label)} {text}\n")
        model = fasttext.train_supervised(
            path, lr=lr, wordNgrams=word_ngrams, epoch=epoch, loss=loss, minCount=1, thread=threads,
            verbose=0, seed=seed,
        )  # fmt: skip
    finally:
        os.unlink(path)
    labels, _ = model.predict([t if t else " " for t in test_texts], k=1)
    return np.array([int(lab[0].removeprefix("__label__")) for lab in labels], dtype=np.int64)


REFERENCES = {
    "datawhale_ridge": datawhale_ridge,
    "linearsvc_bigrams": linearsvc_bigrams,
    "fasttext_lib": fasttext_lib,
}

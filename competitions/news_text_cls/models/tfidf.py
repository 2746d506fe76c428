"""``tfidf``: a scikit-learn Pipeline of TfidfVectorizer over id n-grams and a linear classifier.

``vocab_fit="unlabelled"`` (default) fits the vectoriser once on text only: every row of the training file the
:class:`~competitions.news_text_cls.data.Corpus` came from plus its companion test text, never a label. The fitted
vectoriser and the matrix of every row are memoised on the corpus's store, so the k folds of a run share one
vectorisation and each fold fits just its classifier on its training rows' labels (the validation fold's labels
never reach it). ``vocab_fit="fold"`` re-fits the whole Pipeline on each fold's training rows instead.

Margin classifiers (LinearSVC, SGD with hinge loss, Ridge) give probabilities as ``softmax(softmax_scale *
decision_function)`` (or Platt-calibrated with ``calibrate=true``), so rows sum to 1 and can be blended.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from common.config import ConfigBase, PositiveFloat, PositiveInt
from common.errors import UserError
from common.registry import register_model
from competitions.news_text_cls.data import Corpus, as_texts


@dataclass
class TfidfConfig(ConfigBase):
    ngram_max: PositiveInt = 2  #: word n-grams 1..ngram_max over the ids
    min_df: PositiveInt = 3  #: ignore n-grams in fewer documents
    max_df: Annotated[float, Field(gt=0, le=1)] = 1.0  #: ignore n-grams in a larger share of documents
    max_features: PositiveInt | None = 500_000
    sublinear_tf: bool = True
    vocab_fit: Literal["unlabelled", "fold"] = "unlabelled"
    classifier: Literal["linearsvc", "sgd", "logreg", "ridge"] = "sgd"
    C: PositiveFloat = 1.0  #: inverse regularisation (linearsvc, logreg)
    alpha: PositiveFloat = 2e-5  #: regularisation (sgd; ridge uses alpha * n_rows)
    class_weight: Literal["balanced"] | None = None
    max_iter: PositiveInt = 8  #: epochs (sgd) or solver iterations (others use max(max_iter, 1000) / 200)
    softmax_scale: PositiveFloat = 5.0
    calibrate: bool = False
    n_jobs: PositiveInt = 2  #: SGD's one-vs-rest parallelism
    seed: int = 42


@register_model("tfidf", config=TfidfConfig)
@dataclass(eq=False, repr=False)
class TfidfModel(TfidfConfig, ClassifierMixin, BaseEstimator):
    @staticmethod
    def search_space(trial) -> dict:
        return {
            "ngram_max": trial.suggest_int("ngram_max", 1, 3),
            "min_df": trial.suggest_int("min_df", 1, 5),
            "max_features": trial.suggest_categorical("max_features", [100_000, 300_000, 1_000_000]),
            "alpha": trial.suggest_float("alpha", 3e-6, 3e-4, log=True),
            "class_weight": trial.suggest_categorical("class_weight", [None, "balanced"]),
            "softmax_scale": trial.suggest_float("softmax_scale", 1.0, 20.0, log=True),
        }

    # ------------------------------------------------------------------ parts
    def _vectorizer(self) -> TfidfVectorizer:
        return TfidfVectorizer(
            token_pattern=r"\S+",
            lowercase=False,
            ngram_range=(1, self.ngram_max),
            min_df=self.min_df,
            max_df=self.max_df,
            max_features=self.max_features,
            sublinear_tf=self.sublinear_tf,
            dtype=np.float32,
        )

    def _classifier(self, n_rows: int):
        cw, seed = self.class_weight, self.seed
        if self.classifier == "linearsvc":
            clf = LinearSVC(C=self.C, class_weight=cw, random_state=seed, max_iter=max(self.max_iter, 1000))
        elif self.classifier == "sgd":
            clf = SGDClassifier(
                loss="hinge", alpha=self.alpha, max_iter=self.max_iter, tol=None, class_weight=cw,
                random_state=seed, n_jobs=self.n_jobs, average=False,
            )  # fmt: skip
        elif self.classifier == "logreg":
            return LogisticRegression(C=self.C, class_weight=cw, max_iter=max(self.max_iter, 200))
        else:
            clf = RidgeClassifier(alpha=self.alpha * n_rows, class_weight=cw, solver="sparse_cg")
        if self.calibrate:
            return CalibratedClassifierCV(clf, method="sigmoid", cv=3)
        return clf

    def _vectorizer_key(self) -> tuple:
        keys = ("ngram_max", "min_df", "max_df", "max_features", "sublinear_tf")
        return ("tfidf-vectorizer",) + tuple(asdict(self)[k] for k in keys)

    def _shared_vectorizer(self, X: Corpus):
        """Fit (once per data and vectoriser params) on all the text the store holds; cache the row matrix."""
        store, key = X.store, self._vectorizer_key()
        if key not in store.cache:
            # one vectoriser (and its row matrix, GBs at full size) per store: a tuning run that tries other
            # vectoriser params must not keep every earlier one alive
            for old in [k for k in store.cache if isinstance(k, tuple) and str(k[0]).startswith("tfidf-")]:
                del store.cache[old]
            vec = self._vectorizer()
            n = len(store.texts)
            extra = X.unlabelled_texts()
            matrix = vec.fit_transform(np.concatenate([store.texts, extra]) if len(extra) else store.texts)
            vec.stop_words_ = None  # the pruned terms: large and not needed to transform
            store.cache[key] = vec
            store.cache[("tfidf-matrix", id(vec))] = (vec, matrix[:n])
        return store.cache[key]

    def _features(self, X):
        """TF-IDF rows of ``X``; for a Corpus, slices of the store's memoised matrix when one exists."""
        vec = self.pipeline_.named_steps["tfidf"]
        if isinstance(X, Corpus) and self.vocab_fit == "unlabelled":
            key = ("tfidf-matrix", id(vec))
            if key not in X.store.cache and len(X) > 0:
                for old in [k for k in X.store.cache if isinstance(k, tuple) and k[0] == "tfidf-matrix"]:
                    del X.store.cache[old]  # another vectoriser's rows (see _shared_vectorizer)
                X.store.cache[key] = (vec, vec.transform(X.store.texts))
            return X.store.cache[key][1][X.rows]
        return vec.transform(as_texts(X))

    # ------------------------------------------------------------------ estimator contract
    def check_data(self, X, y) -> None:
        """``min_df`` above the number of documents would leave no vocabulary: say so before anything runs."""
        n_docs = len(X) + (
            len(X.unlabelled_texts()) if isinstance(X, Corpus) and self.vocab_fit == "unlabelled" else 0
        )
        if self.min_df > n_docs:
            raise UserError(
                f"min_df={self.min_df} is above the {n_docs} documents the vocabulary is fitted on"
            )

    def fit(self, X, y, X_valid=None, y_valid=None):
        y = np.asarray(y)
        clf = self._classifier(len(y))
        if self.vocab_fit == "unlabelled":
            corpus = X if isinstance(X, Corpus) else Corpus(as_texts(X))
            self.pipeline_ = Pipeline([("tfidf", self._shared_vectorizer(corpus)), ("clf", clf)])
            clf.fit(self._features(corpus), y)
        else:
            self.pipeline_ = Pipeline([("tfidf", self._vectorizer()), ("clf", clf)])
            self.pipeline_.fit(as_texts(X), y)
            self.pipeline_.named_steps["tfidf"].stop_words_ = None
        self.classes_ = clf.classes_
        return self

    def decision_function(self, X) -> np.ndarray:
        scores = self.pipeline_.named_steps["clf"].decision_function(self._features(X))
        return scores[:, None] * np.array([-0.5, 0.5]) if scores.ndim == 1 else scores

    def predict_proba(self, X) -> np.ndarray:
        clf = self.pipeline_.named_steps["clf"]
        if hasattr(clf, "predict_proba"):
            return np.asarray(clf.predict_proba(self._features(X)), dtype=np.float32)
        return softmax(self.softmax_scale * self.decision_function(X), axis=1).astype(np.float32)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

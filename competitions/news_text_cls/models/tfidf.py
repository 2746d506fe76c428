"""``tfidf``: a scikit-learn Pipeline of a TF-IDF vectoriser over id n-grams and a linear classifier.

The vectoriser (``vectorizer="ids"``, default) is :class:`IdNgramTfidf`: scikit-learn's TfidfVectorizer features,
counted with numpy over integer n-gram codes in bounded memory; ``vectorizer="sklearn"`` is TfidfVectorizer itself
(any whitespace-separated tokens, but ~10 GB and ~5x the time at the contest's full size).

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
from numbers import Integral
from typing import Annotated, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted

from common.config import ConfigBase, NonNegativeInt, PositiveFloat, PositiveInt
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
    #: "ids": :class:`IdNgramTfidf` (integer ids only); "sklearn": TfidfVectorizer (any tokens; ~10 GB at full size)
    vectorizer: Literal["ids", "sklearn"] = "ids"
    matrix_cache_mb: NonNegativeInt = (
        1024  #: ids: memoise the training file's TF-IDF rows when at most this size
    )
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


# ------------------------------------------------------------------------------------------ the id n-gram vectoriser
_KEY_LIMIT = 2**62  # n-gram codes times the documents of a chunk stay below this (int64 sort keys)


class IdNgramTfidf(TransformerMixin, BaseEstimator):
    """TF-IDF over the n-grams (n = 1..``ngram_max``) of integer ids, counted with numpy, chunk by chunk.

    The features of ``TfidfVectorizer(token_pattern=r"\\S+", lowercase=False, ngram_range=(1, ngram_max), min_df,
    max_df, max_features, sublinear_tf, dtype=float32)`` on the contest's text (smooth idf, l2 rows), with every
    n-gram an ``int64`` code instead of a string: ids are numbered 1..V in sorted order (``ids_``) and an n-gram is
    that number sequence read in base V+1, so n-grams of different lengths never share a code. Fitting is two
    passes over chunks of ``chunk_docs`` documents (the ids; then each chunk's (n-gram, document) pairs, sorted
    and merged into one table of document and term frequencies), so memory stays a few chunks plus that table,
    where scikit-learn holds every (document, term) entry of every n-gram in Python lists before pruning (10 GB
    at the contest's size).

    Same pruning as scikit-learn: ``min_df``/``max_df`` (an int is a count of documents, a float a share), then
    the ``max_features`` most frequent n-grams over the corpus (ties: the smaller code). Columns are in code
    order. Fitted state is numpy arrays and an int, so ``skops.io`` stores it without pickle: ``ids_`` (sorted ids
    seen by ``fit``; an unseen id ends every n-gram containing it), ``ngrams_`` (sorted codes; column j is
    ``ngrams_[j]``), ``idf_``, and ``nnz_`` (the entries of the fitted documents' matrix). Documents are strings
    of space-separated integer ids (a :class:`Corpus`, or any array or list of such strings).
    """

    def __init__(
        self,
        ngram_max: int = 2,
        min_df: int | float = 1,
        max_df: int | float = 1.0,
        max_features: int | None = None,
        sublinear_tf: bool = True,
        chunk_docs: int = 512,
    ) -> None:
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.chunk_docs = chunk_docs

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        texts = as_texts(X)
        self.ids_ = self._distinct_ids(texts)
        base = len(self.ids_) + 1
        if base ** min(self.ngram_max, 64) >= _KEY_LIMIT:
            raise ValueError(
                f"{self.ngram_max}-grams over {len(self.ids_)} distinct ids do not fit a 64-bit code; "
                "lower ngram_max (or use vectorizer=sklearn)"
            )
        chunk = max(1, min(self.chunk_docs, _KEY_LIMIT // base**self.ngram_max))
        codes = np.zeros(0, np.int64)
        df = np.zeros(0, np.int64)
        tf = np.zeros(0, np.int64)
        digits = _digit_table(self.ids_)
        for begin in range(0, len(texts), chunk):
            part = texts[begin : begin + chunk]
            key = np.concatenate([code * len(part) + doc for _, code, doc in self._ngrams(part, digits)])
            key.sort()
            key, count = _runs(key)  # (n-gram, document) pairs and their counts
            code, first = _starts(key // len(part))
            part_df = np.diff(np.append(first, len(key)))
            part_tf = np.add.reduceat(count, first) if len(first) else count[:0]
            codes, df, tf = _merge(codes, df, tf, code, part_df, part_tf)
        self._select(codes, df, tf, len(texts))
        return self

    def _distinct_ids(self, texts) -> np.ndarray:
        seen = np.zeros(0, np.int64)
        for begin in range(0, len(texts), self.chunk_docs):
            flat, _ = _parse(texts[begin : begin + self.chunk_docs])
            seen = np.union1d(seen, np.unique(flat))
        return seen.astype(np.int64)

    def _select(self, codes: np.ndarray, df: np.ndarray, tf: np.ndarray, n_docs: int) -> None:
        high = self.max_df if isinstance(self.max_df, Integral) else self.max_df * n_docs
        low = self.min_df if isinstance(self.min_df, Integral) else self.min_df * n_docs
        if high < low:
            raise ValueError("max_df corresponds to < documents than min_df")
        keep = np.flatnonzero((df >= low) & (df <= high))
        if self.max_features is not None and len(keep) > self.max_features:
            keep = np.sort(keep[np.argsort(-tf[keep], kind="stable")[: self.max_features]])
        if len(keep) == 0:
            raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
        self.ngrams_ = codes[keep]
        self.nnz_ = int(df[keep].sum())  # entries of the fitted documents' matrix
        self.idf_ = (np.log((1.0 + n_docs) / (1.0 + df[keep])) + 1.0).astype(np.float32)

    # ------------------------------------------------------------------ transform
    def transform(self, X) -> sp.csr_matrix:
        """The rows of ``X``, written chunk by chunk straight into the matrix's arrays.

        Those arrays are reserved once at an upper bound of the entries (every n-gram occurrence) and shrunk in
        place at the end: reserved pages that are never written cost no memory, so the peak is the matrix plus
        one chunk, where collecting the chunks and joining them held two copies (and the allocator kept the
        freed chunks, ~2x the matrix at the contest's size)."""
        check_is_fitted(self, "ngrams_")
        texts = as_texts(X)
        n_cols = len(self.ngrams_)
        chunk = max(1, min(self.chunk_docs, (2**31 - 1) // n_cols))  # int32 (document, column) sort keys
        key_dtype = np.int32 if chunk * n_cols < 2**31 else np.int64
        columns = _Columns(self.ngrams_, len(self.ids_) + 1)
        digits = _digit_table(self.ids_)
        bound = _occurrences(texts, self.ngram_max)
        index_dtype = np.int32 if bound < 2**31 else np.int64
        indices = np.empty(max(bound, 1), index_dtype)
        data = np.empty(max(bound, 1), np.float32)
        indptr = np.zeros(len(texts) + 1, np.int64)
        at = 0
        for begin in range(0, len(texts), chunk):
            part = texts[begin : begin + chunk]
            keys = []
            for n, code, doc in self._ngrams(part, digits):
                col = columns.find(code, n)
                hit = col >= 0
                keys.append(doc[hit].astype(key_dtype) * key_dtype(n_cols) + col[hit].astype(key_dtype))
            key = np.concatenate(keys)
            del keys
            key.sort()
            key, count = _runs(key)
            doc = key // n_cols
            if at + len(key) > len(data):  # only if the bound missed (ids split by other whitespace)
                grow = max(at + len(key), 2 * len(data))
                indices.resize(grow, refcheck=False)
                data.resize(grow, refcheck=False)
            values = data[at : at + len(key)]
            values[:] = count
            if self.sublinear_tf:
                np.log(values, out=values)
                values += 1.0
            col = indices[at : at + len(key)]
            col[:] = key - doc * n_cols
            values *= self.idf_[col]
            norms = np.sqrt(
                np.bincount(doc, weights=np.square(values, dtype=np.float64), minlength=len(part))
            )
            norms[norms == 0] = 1.0
            values /= norms.astype(np.float32)[doc]
            indptr[begin + 1 : begin + len(part) + 1] = at + np.cumsum(np.bincount(doc, minlength=len(part)))
            at += len(key)
        indices.resize(max(at, 1), refcheck=False)  # realloc: the unwritten tail goes back, nothing is copied
        data.resize(max(at, 1), refcheck=False)
        if at >= 2**31 and indices.dtype == np.int32:  # grown past the bound and past int32 (tab-split ids)
            indices = indices.astype(np.int64)
        matrix = sp.csr_matrix(
            (data[:at], indices[:at], indptr.astype(indices.dtype)), shape=(len(texts), n_cols), copy=False
        )
        matrix.has_sorted_indices = True
        return matrix

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Each column's n-gram as TfidfVectorizer names it (its ids joined by spaces)."""
        check_is_fitted(self, "ngrams_")
        base, ids = len(self.ids_) + 1, self.ids_.tolist()
        names = []
        for code in self.ngrams_.tolist():
            gram = []
            while code:
                code, digit = divmod(code, base)
                gram.append(str(ids[digit - 1]))
            names.append(" ".join(reversed(gram)))
        return np.asarray(names, dtype=object)

    # ------------------------------------------------------------------ n-grams
    def _ngrams(self, texts, digits):
        """``(n, codes, documents)`` for n = 1..ngram_max: every n-gram of ``texts`` and its document (0-based).

        An n-gram never crosses a document's end, and none contains an id that ``fit`` did not see (``digits``
        maps an id to its number 1..V, 0 when unseen)."""
        flat, lengths = _parse(texts)
        digit = digits(flat)
        base = len(self.ids_) + 1
        doc = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
        unseen = digit == 0
        check_unseen = bool(unseen.any())
        code = digit
        yield 1, code[~unseen] if check_unseen else code, doc[~unseen] if check_unseen else doc
        if self.ngram_max < 2:
            return
        # ids from each position to its document's end, so an n-gram starting there fits when it is >= n
        left = (np.repeat(np.cumsum(lengths), lengths) - np.arange(len(flat))).astype(np.int32)
        for n in range(2, self.ngram_max + 1):
            code = code[:-1] * base + digit[n - 1 :]
            keep = left[: len(code)] >= n
            if check_unseen:
                unseen = unseen[:-1] | (digit[n - 1 :] == 0)
                keep &= ~unseen
            yield n, code[keep], doc[: len(code)][keep]


class _Columns:
    """The column of an n-gram code in sorted ``ngrams`` (-1 when absent).

    Unigrams (codes below ``base``): a table. Bigrams: a bitmap over every bigram code with the number of kept
    codes before each 64-bit word (a rank query: ~4x faster than a binary search, ~9 MB for the contest's ids).
    Longer n-grams: a binary search in the slice of n-grams of that length."""

    _BITMAP_MAX_BITS = 2**30

    def __init__(self, ngrams: np.ndarray, base: int) -> None:
        self.ngrams = ngrams
        self.base = base
        n_uni = int(np.searchsorted(ngrams, base))
        self.unigram = np.full(base, -1, np.int64)
        self.unigram[ngrams[:n_uni]] = np.arange(n_uni)
        self.bits = None
        if base**2 <= self._BITMAP_MAX_BITS:
            lo, hi = np.searchsorted(ngrams, [base, base**2])
            bigrams = ngrams[lo:hi]
            self.bits = np.zeros((base**2 >> 6) + 1, np.uint64)
            word, first = _starts(bigrams >> 6)
            one_bit = np.left_shift(np.uint64(1), (bigrams & 63).astype(np.uint64))
            if len(first):
                self.bits[word] = np.bitwise_or.reduceat(one_bit, first)
            self.rank = np.empty(len(self.bits), np.int64)  # kept codes before each word, plus lo
            self.rank[0] = lo
            np.cumsum(np.bitwise_count(self.bits[:-1]), out=self.rank[1:])
            self.rank[1:] += lo

    def find(self, code: np.ndarray, n: int) -> np.ndarray:
        if n == 1:
            return self.unigram[code]
        if n == 2 and self.bits is not None:
            word = code >> 6
            bit = (code & 63).astype(np.uint64)
            bits = self.bits[word]
            below = np.bitwise_count(bits & ((np.uint64(1) << bit) - np.uint64(1)))
            found = ((bits >> bit) & np.uint64(1)).astype(bool)
            return np.where(found, self.rank[word] + below, -1)
        lo, hi = np.searchsorted(self.ngrams, [self.base ** (n - 1), self.base**n])
        same_n = self.ngrams[lo:hi]
        if len(same_n) == 0:
            return np.full(len(code), -1, np.int64)
        at = np.searchsorted(same_n, code)
        found = same_n[np.minimum(at, len(same_n) - 1)] == code
        return np.where(found, at + lo, -1)


def _digit_table(ids: np.ndarray):
    """A function mapping ids to their number 1..V in sorted ``ids`` (0 when absent): a lookup table when the
    largest id is small (the contest's are below 8,000), a binary search otherwise."""
    if len(ids) == 0:
        return lambda flat: np.zeros(len(flat), np.int64)
    if ids[-1] < 2**24:
        table = np.zeros(int(ids[-1]) + 2, np.int64)
        table[ids] = np.arange(1, len(ids) + 1)
        return lambda flat: table[np.minimum(flat, len(table) - 1)]

    def search(flat):
        pos = np.searchsorted(ids, flat)
        return np.where(ids[np.minimum(pos, len(ids) - 1)] == flat, pos + 1, 0)

    return search


def _parse(texts) -> tuple[np.ndarray, np.ndarray]:
    corpus = Corpus(texts)
    return corpus.flat, corpus.lengths


def _starts(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a sorted array and the index where each run starts."""
    if len(sorted_values) == 0:
        return sorted_values, np.zeros(0, np.int64)
    first = np.flatnonzero(np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]]))
    return sorted_values[first], first


def _runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a sorted array and how often each occurs."""
    values, first = _starts(sorted_values)
    return values, np.diff(np.append(first, len(sorted_values)))


def _merge(codes, df, tf, new_codes, new_df, new_tf):
    """Add a chunk's sorted (code, df, tf) table into the running sorted table."""
    pos = np.searchsorted(codes, new_codes)
    known = np.zeros(len(new_codes), bool)
    if len(codes):
        known = codes[np.minimum(pos, len(codes) - 1)] == new_codes
    df[pos[known]] += new_df[known]
    tf[pos[known]] += new_tf[known]
    fresh = ~known
    where = pos[fresh]
    return (
        np.insert(codes, where, new_codes[fresh]),
        np.insert(df, where, new_df[fresh]),
        np.insert(tf, where, new_tf[fresh]),
    )


def _occurrences(texts, ngram_max: int) -> int:
    """How many n-grams (n = 1..``ngram_max``) ``texts`` hold: an upper bound of their TF-IDF matrix's entries."""
    lengths = np.fromiter((t.count(" ") + 1 if t else 0 for t in texts), np.int64, count=len(texts))
    n = np.arange(1, ngram_max + 1)
    return int(np.maximum(lengths[:, None] - n + 1, 0).sum()) if len(lengths) else 0


# ------------------------------------------------------------------------------------------------ the model
def _slim(vec: TfidfVectorizer) -> None:
    """Drop the pruned terms (large, not needed to transform) and make the vocabulary's numpy ints plain ints:
    skops stores a dict entry by entry, and a numpy scalar costs it a whole array's state (minutes at 500k terms)."""
    vec.stop_words_ = None
    vec.vocabulary_ = {term: int(col) for term, col in vec.vocabulary_.items()}


@register_model("tfidf", config=TfidfConfig)
@dataclass(eq=False, repr=False)
class TfidfModel(TfidfConfig, ClassifierMixin, BaseEstimator):
    @staticmethod
    def search_space(trial) -> dict:
        return {
            "ngram_max": trial.suggest_int("ngram_max", 1, 3),
            "min_df": trial.suggest_int("min_df", 1, 5),
            "max_features": trial.suggest_categorical("max_features", [100_000, 300_000, 500_000, 1_000_000]),
            "alpha": trial.suggest_float("alpha", 3e-6, 3e-4, log=True),
            "class_weight": trial.suggest_categorical("class_weight", [None, "balanced"]),
            "softmax_scale": trial.suggest_float("softmax_scale", 1.0, 20.0, log=True),
        }

    # ------------------------------------------------------------------ parts
    def _vectorizer(self):
        if self.vectorizer == "ids":
            return IdNgramTfidf(
                ngram_max=self.ngram_max,
                min_df=self.min_df,
                max_df=self.max_df,
                max_features=self.max_features,
                sublinear_tf=self.sublinear_tf,
            )
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
        keys = ("vectorizer", "ngram_max", "min_df", "max_df", "max_features", "sublinear_tf")
        return ("tfidf-vectorizer",) + tuple(asdict(self)[k] for k in keys)

    def _shared_vectorizer(self, X: Corpus):
        """Fit (once per data and vectoriser params) on all the text the store holds; memoise it on the store,
        with the matrix of the store's rows when it is small enough (always with ``vectorizer="sklearn"``).

        The ids vectoriser memoises that matrix only up to ``matrix_cache_mb``: at the contest's full size it is
        1.8 GB and would sit beside each fold's training rows (1.5 GB, a copy the classifier needs), so there
        each fold re-transforms its rows instead (a few seconds per 10,000 documents)."""
        store, key = X.store, self._vectorizer_key()
        if key not in store.cache:
            # one vectoriser (and its row matrix, GBs at full size) per store: a tuning run that tries other
            # vectoriser params must not keep every earlier one alive
            for old in [k for k in store.cache if isinstance(k, tuple) and str(k[0]).startswith("tfidf-")]:
                del store.cache[old]
            vec = self._vectorizer()
            n = len(store.texts)
            extra = X.unlabelled_texts()
            texts = np.concatenate([store.texts, extra]) if len(extra) else store.texts
            if self.vectorizer == "ids":
                vec.fit(texts)
                matrix_mb = vec.nnz_ * n / len(texts) * 8 / 2**20  # float32 values + int32 columns
                if matrix_mb <= self.matrix_cache_mb:
                    store.cache[("tfidf-matrix", id(vec))] = (vec, vec.transform(store.texts))
            else:
                matrix = vec.fit_transform(texts)
                _slim(vec)
                store.cache[("tfidf-matrix", id(vec))] = (vec, matrix[:n])
            store.cache[key] = vec
        return store.cache[key]

    def _features(self, X):
        """TF-IDF rows of ``X``: for a Corpus, slices of its store's memoised matrix when there is one (with
        ``vectorizer="sklearn"``, made for any store on first use)."""
        vec = self.pipeline_.named_steps["tfidf"]
        if isinstance(X, Corpus) and self.vocab_fit == "unlabelled":
            key = ("tfidf-matrix", id(vec))
            if key not in X.store.cache and len(X) > 0 and self.vectorizer == "sklearn":
                for old in [k for k in X.store.cache if isinstance(k, tuple) and k[0] == "tfidf-matrix"]:
                    del X.store.cache[old]  # another vectoriser's rows (see _shared_vectorizer)
                X.store.cache[key] = (vec, vec.transform(X.store.texts))
            if key in X.store.cache:
                return X.store.cache[key][1][X.rows]
        return vec.transform(as_texts(X))

    # ------------------------------------------------------------------ estimator contract
    def check_data(self, X, y) -> None:
        """``min_df`` above the number of documents would leave no vocabulary: say so before anything runs."""
        n_docs = len(X) + (
            len(X.unlabelled_texts()) if isinstance(X, Corpus) and self.vocab_fit == "unlabelled" else 0
        )
        if self.vocab_fit == "fold":  # each fold fits on its training part, about (k-1)/k of the rows
            n_docs = int(n_docs * 0.5)  # the smallest training part of 2 folds; more folds leave more rows
        if self.min_df > n_docs:
            raise UserError(
                f"min_df={self.min_df} is above the {n_docs} documents the vocabulary is fitted on"
                + (" (vocab_fit=fold: a fold's training part)" if self.vocab_fit == "fold" else "")
            )
        if self.max_df * n_docs < self.min_df:
            raise UserError(
                f"max_df={self.max_df} of {n_docs} documents is below min_df={self.min_df}: no n-gram can be kept"
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
            if self.vectorizer == "sklearn":
                _slim(self.pipeline_.named_steps["tfidf"])
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

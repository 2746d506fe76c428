"""The id n-gram vectoriser gives TfidfVectorizer's features, and a fitted ``tfidf`` stores without pickle."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from common.registry import create_model
from competitions.news_text_cls.competition import NewsCompetition
from competitions.news_text_cls.data import read_train
from competitions.news_text_cls.models.tfidf import IdNgramTfidf, TfidfModel

COMP = NewsCompetition()
SKLEARN = {"token_pattern": r"\S+", "lowercase": False, "sublinear_tf": True, "dtype": np.float32}


@pytest.fixture(scope="module")
def texts(demo_dir):
    corpus, _ = read_train(demo_dir / "train_set.csv")
    return list(corpus.texts)


def _ours_in_sklearn_columns(ours: IdNgramTfidf, theirs: TfidfVectorizer, matrix):
    names = ours.get_feature_names_out()
    assert sorted(names) == sorted(theirs.vocabulary_)
    order = np.argsort([theirs.vocabulary_[n] for n in names])
    return matrix[:, order]


@pytest.mark.parametrize(
    ("ngram_max", "min_df", "max_df"), [(1, 1, 1.0), (2, 3, 1.0), (3, 2, 0.5), (2, 1, 40)]
)
def test_same_features_as_sklearn(texts, ngram_max, min_df, max_df):
    fit_texts, new_texts = (
        texts[:300] + [""],
        texts[300:] + ["", "7549 999999 7549 1"],
    )  # unseen ids, empty rows
    ours = IdNgramTfidf(ngram_max=ngram_max, min_df=min_df, max_df=max_df, chunk_docs=37).fit(fit_texts)
    theirs = TfidfVectorizer(ngram_range=(1, ngram_max), min_df=min_df, max_df=max_df, **SKLEARN).fit(
        fit_texts
    )
    np.testing.assert_allclose(ours.idf_[np.argsort(ours.get_feature_names_out())],
                               theirs.idf_[np.argsort(theirs.get_feature_names_out())], rtol=1e-6)  # fmt: skip
    for docs in (fit_texts, new_texts):
        got = _ours_in_sklearn_columns(ours, theirs, ours.transform(docs))
        assert got.shape == (len(docs), len(theirs.vocabulary_))
        np.testing.assert_allclose(got.toarray(), theirs.transform(docs).toarray(), atol=1e-6)


def test_transform_outgrows_a_missed_bound(texts):
    """The matrix's arrays are reserved from a count of spaces; ids split by tabs make that count too low, and
    the rows must still come out whole (the arrays grow) and equal to the space-separated ones."""
    ours = IdNgramTfidf(ngram_max=2, min_df=1, chunk_docs=7).fit(texts[:200])
    spaced = texts[:50]
    tabbed = [t.replace(" ", "\t") for t in spaced]
    want, got = ours.transform(spaced), ours.transform(tabbed)
    assert got.nnz == want.nnz > 2 * len(spaced)  # far beyond the 2 entries per document reserved for them
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.data, want.data)


def test_max_features_keeps_the_most_frequent_ngrams(texts):
    ours = IdNgramTfidf(ngram_max=2, max_features=2000).fit(texts)
    counts = CountVectorizer(token_pattern=r"\S+", lowercase=False, ngram_range=(1, 2)).fit(texts)
    tf = dict(zip(counts.get_feature_names_out(), counts.transform(texts).sum(axis=0).A1, strict=True))
    kept = set(ours.get_feature_names_out())
    assert len(kept) == 2000
    lowest_kept = min(tf[n] for n in kept)
    assert (
        max(tf[n] for n in tf if n not in kept) <= lowest_kept
    )  # only ties at the cut can differ from sklearn


def test_overlong_ngram_codes_are_refused():
    docs = [" ".join(str(i) for i in range(k, k + 50)) for k in range(0, 3000, 50)]
    with pytest.raises(ValueError, match="64-bit"):
        IdNgramTfidf(ngram_max=6).fit(docs)


def test_fitted_model_stores_through_skops_without_pickle(demo_dir):
    train, test = COMP.load_train(demo_dir), COMP.load_test(demo_dir)
    model = create_model("tfidf").fit(train.X, train.y)
    blob = sio.dumps(model)
    qualified = [f"{cls.__module__}.{cls.__qualname__}" for cls in (IdNgramTfidf, TfidfModel)]
    assert sorted(sio.get_untrusted_types(data=blob)) == sorted(qualified)  # the rest: numpy, scikit-learn
    loaded = sio.loads(blob, trusted=qualified)
    np.testing.assert_array_equal(loaded.predict_proba(test.X), model.predict_proba(test.X))


def test_sklearn_vectorizer_is_still_available(demo_dir):
    train = COMP.load_train(demo_dir)
    idx = np.arange(300)
    scores = {}
    for vectorizer in ("ids", "sklearn"):
        model = create_model("tfidf", vectorizer=vectorizer, vocab_fit="fold").fit(train.X[idx], train.y[idx])
        valid = np.arange(300, len(train.y))
        scores[vectorizer] = COMP.score(train.y[valid], model.predict_proba(train.X[valid]))
    assert abs(scores["ids"] - scores["sklearn"]) < 0.02, scores

"""Every registered news model (except BERT, which needs a pretrained directory) fits and predicts on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from common import cv
from common.config import flat_keys
from common.folds import make_folds
from common.registry import create_model, list_models
from common.store import RunStore
from competitions.news_text_cls.competition import NewsCompetition

COMP = NewsCompetition()
COMP.import_models()
FAST = {
    "tfidf": {},
    "textcnn": {
        "epochs": 1,
        "batch_size": 32,
        "max_len": 64,
        "embed_dim": 16,
        "num_filters": 8,
        "quiet": True,
    },
    "lstm": {"epochs": 1, "batch_size": 32, "max_len": 48, "embed_dim": 16, "hidden": 8, "quiet": True},
    "fasttext": {
        "epochs": 1,
        "batch_size": 32,
        "max_len": 64,
        "embed_dim": 16,
        "buckets": 5000,
        "quiet": True,
    },
}
MODELS = [m for m in list_models(module=COMP.models_module) if "bert" not in m]


def test_the_baselines_are_registered():
    assert {"tfidf", "textcnn", "lstm", "fasttext"} <= set(MODELS)


@pytest.fixture(scope="module")
def demo(demo_dir):
    return COMP.load_train(demo_dir), COMP.load_test(demo_dir)


@pytest.mark.parametrize("name", MODELS)
def test_fit_predict_proba(name, demo):
    train, test = demo
    model = create_model(name, **FAST.get(name, {}))
    idx = np.arange(300)
    model.fit(train.X[idx], train.y[idx])
    proba = model.predict_proba(test.X)
    assert proba.shape == (len(test.X), 14)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-4)
    assert list(model.classes_) == list(range(14))
    pred = model.predict(train.X[np.arange(300, 420)])
    assert pred.shape == (120,) and set(pred) <= set(range(14))
    fresh = clone(model)
    assert not hasattr(fresh, "classes_")


@pytest.mark.parametrize("name", MODELS)
def test_two_class_file(name, demo2_dir):
    train = COMP.load_train(demo2_dir)
    model = create_model(name, **FAST.get(name, {})).fit(train.X, train.y)
    proba = model.predict_proba(COMP.load_test(demo2_dir).X)
    assert proba.shape == (20, 2)


@pytest.mark.parametrize("name", MODELS)
def test_validation_labels_never_reach_the_model(name, demo, tmp_path):
    """Shuffling the validation fold's labels leaves that fold's predictions unchanged."""
    train, _ = demo
    folds = make_folds(train.ids, train.strata, n_folds=3, seed=0)["fold"].to_numpy()
    model = create_model(name, **FAST.get(name, {}))
    shuffled_y = train.y.copy()
    valid = np.flatnonzero(folds == 0)
    shuffled_y[valid] = np.random.default_rng(0).permutation(shuffled_y[valid])
    assert (shuffled_y != train.y).any()
    shuffled = type(train)(X=train.X, y=shuffled_y, ids=train.ids, strata=train.strata)
    for data, out in ((train, tmp_path / "a"), (shuffled, tmp_path / "b")):
        cv.run_fold(model, data, folds, 0, RunStore(out), COMP)
    np.testing.assert_array_equal(
        np.load(tmp_path / "a/fold0/oof.npy"), np.load(tmp_path / "b/fold0/oof.npy")
    )


def test_tfidf_shares_one_vectorisation_across_folds(demo):
    train, _ = demo
    a = create_model("tfidf").fit(train.X[np.arange(0, 300)], train.y[:300])
    b = create_model("tfidf").fit(train.X[np.arange(100, 420)], train.y[100:])
    assert a.pipeline_.named_steps["tfidf"] is b.pipeline_.named_steps["tfidf"]
    # the shared vocabulary saw every row's text and the companion test text, but no label
    assert len(a.pipeline_.named_steps["tfidf"].ngrams_) > 0


@pytest.mark.parametrize("classifier", ["linearsvc", "logreg", "ridge"])
def test_tfidf_classifiers(classifier, demo):
    train, test = demo
    model = create_model("tfidf", classifier=classifier, vocab_fit="fold").fit(train.X, train.y)
    proba = model.predict_proba(test.X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-4)
    assert COMP.score(train.y, model.predict_proba(train.X)) > 0.5  # it fits its own training rows


@pytest.mark.parametrize("name", ["textcnn", "lstm", "fasttext"])
def test_search_space_builds_valid_configs(name):
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = create_model(name).search_space(trial)
    model = create_model(name, **params)
    assert all(flat_keys(model)[k] == v for k, v in params.items())

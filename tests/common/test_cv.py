import json

import numpy as np
import pytest

from common import cv
from common.errors import UserError
from common.folds import get_folds
from common.registry import create_model
from common.store import RunStore


def _folds(data, tmp_path, k=3):
    return get_folds(tmp_path / "folds", data.ids, data.strata, k, 42)[0]


def _mlp(**kw):
    return create_model("toy_mlp", **{"epochs": 3, "lr": 0.05, "quiet": True, "device": "cpu", **kw})


def test_fold_artefacts_and_merge(toy_data, tmp_path):
    comp, data, test = toy_data
    folds = _folds(data, tmp_path)
    run = RunStore(tmp_path / "run")
    results = cv.run_folds(_mlp(), data, folds, run, comp, test=test)
    assert [r["fold"] for r in results] == [0, 1, 2]
    for k in range(3):
        d = run.path / f"fold{k}"
        assert {
            "estimator.json",
            "model.safetensors",
            "oof.npy",
            "oof_ids.npy",
            "test.npy",
            "metrics.json",
        } <= {p.name for p in d.iterdir()}
        assert not (d / "last.pt").exists()
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["n_valid"] == int((folds == k).sum()) and metrics["metric"] == "accuracy"
        assert np.load(d / "oof_ids.npy").tolist() == data.ids[folds == k].tolist()
        assert np.load(d / "test.npy").shape == (len(test.ids), 3)
    summary = cv.merge(run, data, folds, comp)
    oof = np.load(run.path / "oof.npy")
    assert np.load(run.path / "oof_ids.npy").tolist() == data.ids.tolist()  # data order
    for k in range(3):
        assert np.array_equal(oof[folds == k], np.load(run.path / f"fold{k}" / "oof.npy"))
    assert summary["score"] == pytest.approx(comp.score(data.y, oof))
    assert summary["score"] > 0.5
    expected_test = np.mean([np.load(run.path / f"fold{k}" / "test.npy") for k in range(3)], axis=0)
    assert np.allclose(np.load(run.path / "test.npy"), expected_test)
    assert json.loads((run.path / "cv.json").read_text())["n_folds"] == 3


def test_complete_fold_skipped_unless_force(toy_data, tmp_path):
    comp, data, _ = toy_data
    folds = _folds(data, tmp_path)
    run = RunStore(tmp_path / "run")
    cv.run_fold(_mlp(), data, folds, 0, run, comp)
    marker = run.path / "fold0" / "metrics.json"
    stamp = marker.stat().st_mtime_ns
    calls = []
    cv.run_fold(_mlp(), data, folds, 0, run, comp, callbacks=[lambda e, r: calls.append(e)])
    assert calls == [] and marker.stat().st_mtime_ns == stamp
    cv.run_fold(_mlp(), data, folds, 0, run, comp, force=True, callbacks=[lambda e, r: calls.append(e)])
    assert calls == [0, 1, 2] and marker.stat().st_mtime_ns != stamp


def test_merge_refuses_missing_folds(toy_data, tmp_path):
    comp, data, _ = toy_data
    folds = _folds(data, tmp_path)
    run = RunStore(tmp_path / "run")
    cv.run_folds(create_model("toy_logreg"), data, folds, run, comp, which=[0, 2])
    assert cv.missing_folds(run, folds) == [1]
    with pytest.raises(UserError, match=r"fold\(s\) \[1\] are not complete"):
        cv.merge(run, data, folds, comp)
    assert not (run.path / "cv.json").exists() and not (run.path / "oof.npy").exists()


def test_merge_refuses_folds_of_other_data(toy_data, tmp_path):
    comp, data, _ = toy_data
    folds = _folds(data, tmp_path)
    run = RunStore(tmp_path / "run")
    cv.run_folds(create_model("toy_logreg"), data, folds, run, comp)
    other = np.roll(folds, 1)
    with pytest.raises(UserError, match="other data"):
        cv.merge(run, data, other, comp)


@pytest.mark.parametrize("name", ["toy_mlp", "toy_logreg"])
def test_validation_labels_never_reach_the_model(toy_data, tmp_path, name):
    comp, data, _ = toy_data
    folds = _folds(data, tmp_path)
    model = _mlp() if name == "toy_mlp" else create_model(name)
    cv.run_fold(model, data, folds, 1, RunStore(tmp_path / "a"), comp)
    rng = np.random.default_rng(0)
    y = data.y.copy()
    valid = np.flatnonzero(folds == 1)
    y[valid] = rng.permutation((y[valid] + 1) % 3)
    shuffled = type(data)(X=data.X, y=y, ids=data.ids, strata=data.strata)
    cv.run_fold(model, shuffled, folds, 1, RunStore(tmp_path / "b"), comp)
    assert np.array_equal(np.load(tmp_path / "a/fold1/oof.npy"), np.load(tmp_path / "b/fold1/oof.npy"))


def test_predefined_split_with_train_only_rows(toy_data, tmp_path):
    comp, data, _ = toy_data
    folds = np.where(np.arange(len(data.y)) % 4 == 0, 0, -1)
    assert cv.fold_numbers(folds) == [0]
    run = RunStore(tmp_path / "run")
    cv.run_folds(create_model("toy_logreg"), data, folds, run, comp)
    summary = cv.merge(run, data, folds, comp)
    assert np.load(run.path / "oof_ids.npy").tolist() == data.ids[folds == 0].tolist()
    assert summary["n_folds"] == 1


def test_take():
    import pandas as pd

    idx = np.array([2, 0])
    assert cv.take(np.arange(4), idx).tolist() == [2, 0]
    assert cv.take(["a", "b", "c"], idx) == ["c", "a"]
    frame = cv.take(pd.DataFrame({"v": [1, 2, 3]}, index=[10, 11, 12]), idx)
    assert frame["v"].tolist() == [3, 1] and frame.index.tolist() == [0, 1]


@pytest.mark.parametrize("model", ["toy_logreg", "toy_mlp"])
def test_a_class_missing_from_a_folds_training_rows_keeps_columns_aligned(toy_data, tmp_path, model):
    comp, data, test = toy_data
    data.y = data.y.copy()
    data.y[7] = 3  # a fourth class with one row: the fold that validates it never trains on it
    folds = _folds(data, tmp_path)
    run = RunStore(tmp_path / "run")
    params = {"epochs": 2, "quiet": True, "device": "cpu"} if model == "toy_mlp" else {}
    cv.run_folds(create_model(model, **params), data, folds, run, comp, test=test)
    k = folds[7]
    oof = np.load(run.path / f"fold{k}" / "oof.npy")
    assert oof.shape[1] == 4 and np.all(oof[:, 3] == 0)  # the absent class gets 0, others keep their column
    assert np.allclose(oof.sum(1), 1, atol=1e-5) and np.load(run.path / f"fold{k}" / "test.npy").shape[1] == 4
    summary = cv.merge(run, data, folds, comp)
    assert np.load(run.path / "oof.npy").shape == (len(data.y), 4) and 0 <= summary["score"] <= 1


def test_align_columns_rejects_unknown_classes():
    class Fitted:
        classes_ = np.array([0, 5])

    with pytest.raises(UserError, match=r"predicts classes \[0, 5\]"):
        cv.align_columns(Fitted(), np.ones((2, 2), np.float32), [0, 1, 2])


def test_tiny_data_with_many_classes_trains_without_stratified_holdout(tmp_path):
    X = np.random.default_rng(0).normal(size=(42, 4)).astype(np.float32)
    y = np.arange(42) % 14  # 3 rows a class: a 10% stratified holdout cannot hold every class
    model = create_model("toy_mlp", epochs=1, quiet=True, device="cpu").fit(X, y)
    assert model.predict_proba(X).shape == (42, 14)


@pytest.mark.parametrize("name", ["toy_mlp", "toy_logreg"])
def test_stored_fold_models_load_without_pickle_and_predict_the_same(toy_data, tmp_path, name):
    comp, data, test = toy_data
    folds = _folds(data, tmp_path)
    run = RunStore(tmp_path / "run")
    model = _mlp() if name == "toy_mlp" else create_model(name)
    cv.run_fold(model, data, folds, 0, run, comp, test)
    names = {p.name for p in run.fold_dir(0).iterdir()}
    assert "model.pkl" not in names and "estimator.json" in names
    assert ("model.skops" in names) == (name == "toy_logreg")
    loaded = run.load_model(0)
    assert type(loaded).__name__ == type(model).__name__
    assert np.allclose(
        cv.predict_proba(loaded, test.X, [0, 1, 2]), np.load(run.fold_dir(0) / "test.npy"), atol=1e-6
    )


def test_a_resumed_fold_counts_the_time_before_the_crash(toy_data, tmp_path):
    """A fold killed after epoch 1 and resumed reports the seconds of both parts, not only the resumed one."""
    import time

    comp, data, _ = toy_data
    folds = _folds(data, tmp_path)
    run = RunStore(tmp_path / "run")

    def slow_then_crash(epoch, record):
        time.sleep(0.5)
        if epoch == 1:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cv.run_fold(_mlp(epochs=4), data, folds, 0, run, comp, callbacks=[slow_then_crash])
    metrics = cv.run_fold(_mlp(epochs=4), data, folds, 0, run, comp)
    # epoch 0's slow callback ran before the epoch-1 checkpoint: counted, though this process never saw it
    assert metrics["seconds"] >= 0.5


def test_repredict_test_uses_the_stored_models(toy_data, tmp_path):
    comp, data, test = toy_data
    folds = _folds(data, tmp_path)
    run = RunStore(tmp_path / "run")
    cv.run_folds(create_model("toy_logreg"), data, folds, run, comp, test=test)
    reversed_test = type(test)(X=test.X[::-1].copy(), ids=test.ids[::-1].copy())
    before = np.load(run.fold_dir(0) / "test.npy")
    assert cv.repredict_test(run, [0, 1, 2, "full"], reversed_test, [0, 1, 2]) == [0, 1, 2]
    assert np.allclose(np.load(run.fold_dir(0) / "test.npy"), before[::-1])

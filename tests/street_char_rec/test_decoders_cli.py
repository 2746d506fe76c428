"""crnn and detector through the shared k-fold flow and CLI on tiny data: train, predict, a blend with the
multi-head cnn, tune, and stored fold models that load without pickle and predict the same."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from common import cv
from common.registry import create_model
from common.store import RunStore
from competitions.street_char_rec.cli import main
from competitions.street_char_rec.competition import StreetCompetition

from .conftest import TINY, TINY_BY_MODEL

SIZE = ["img_h=32", "img_w=64", "epochs=1", "batch_size=16"]
MODEL_SET = {
    "cnn": ["width=8"],
    "crnn": ["backbone=small", "col_stride=8", "width=8", "hidden=16", "decode=beam", "beam_width=4"],
    "detector": ["width=8", "fpn_channels=32", "head_convs=1", "levels=2"],
}


def _sets(model: str, *extra: str) -> list[str]:
    out = []
    for item in [*SIZE, *MODEL_SET[model], *extra]:
        out += ["--set", item]
    return out


@pytest.fixture(scope="module")
def runs(street_data, tmp_path_factory):
    """One official-split run per model (one fold: mchar_val), sharing the folds."""
    root = tmp_path_factory.mktemp("decoder-runs")
    for model in MODEL_SET:
        argv = ["train", "--model", model, "--data-dir", str(street_data), "--run-dir", str(root / model)]
        argv += ["--folds-dir", str(root / "folds"), "--submissions-dir", str(root / "subs"), "--quiet"]
        assert main(argv + _sets(model, "split=official")) == 0, model
    return root


@pytest.mark.parametrize("model", ["crnn", "detector"])
def test_train_then_predict_writes_the_same_submission(runs, street_data, model, capsys):
    run = runs / model
    cv_json = json.loads((run / "cv.json").read_text())
    assert cv_json["n_folds"] == 1 and 0.0 <= cv_json["score"] <= 1.0
    assert np.load(run / "oof.npy").shape == (16, 6, 11)
    sub = pd.read_csv(run / "submission.csv", dtype=str)
    assert sub["file_code"].str.fullmatch(r"[0-9]{1,6}").all() and len(sub) == 12
    out = runs / f"{model}-predict.csv"
    argv = ["predict", "--run-dir", str(run), "--data-dir", str(street_data), "--out", str(out),
            "--submissions-dir", str(out.parent / "subs")]  # fmt: skip
    assert main(argv) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype=str), sub)


def test_blend_with_the_multi_head_cnn(runs, street_data, capsys):
    members = [str(runs / m) for m in MODEL_SET]
    out = runs / "blend"
    argv = ["blend", "--data-dir", str(street_data), "--runs", *members, "--out", str(out)]
    assert main(argv + ["--submissions-dir", str(runs / "subs")]) == 0
    text = capsys.readouterr().out
    assert text.strip().splitlines()[-1].startswith("CV string_accuracy:")
    assert np.load(out / "oof.npy").shape == (16, 6, 11)
    assert pd.read_csv(out / "submission.csv", dtype=str)["file_code"].str.fullmatch(r"[0-9]+").all()


@pytest.mark.parametrize("model", ["crnn", "detector"])
def test_tune_two_trials(street_data, tmp_path, monkeypatch, model, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["tune", "--model", model, "--data-dir", str(street_data), "--trials", "2", "--out", "best.yaml"]
    argv += ["--folds-dir", str(tmp_path / "folds"), "--quiet"]
    assert main(argv + _sets(model, "split=official")) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("best string_accuracy: ")
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert {"lr", "weight_decay"} <= set(best) and best["epochs"] == 1


@pytest.mark.parametrize("model", ["crnn", "detector"])
def test_stored_fold_models_load_without_pickle_and_predict_the_same(street_data, tmp_path, model):
    comp = StreetCompetition()
    data, test = comp.load_train(street_data), comp.load_test(street_data)
    folds = np.arange(len(data.y)) % 2
    run = RunStore(tmp_path / "run")
    params = {**TINY, **TINY_BY_MODEL[model], "tta": 1}
    cv.run_fold(create_model(model, **params), data, folds, 0, run, comp, test)
    names = {p.name for p in run.fold_dir(0).iterdir()}
    assert "estimator.json" in names and "model.safetensors" in names and "model.pkl" not in names
    loaded = run.load_model(0)
    assert type(loaded).__name__ == type(create_model(model)).__name__
    stored = np.load(run.fold_dir(0) / "test.npy")
    np.testing.assert_allclose(cv.predict_proba(loaded, test.X, None), stored, atol=1e-6)
    assert comp.predictions(stored).tolist() == loaded.predict(test.X).tolist()

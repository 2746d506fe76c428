"""Pseudo-labelling on the toy contest: confident test rows join each fold's training part only (fold -1), the
labelled rows keep the source run's folds (same OOF rows, blendable with the source), fold k's pseudo labels come
from the source's fold-k model, and the run records where its pseudo labels came from."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from common.competition import TrainData
from common.leaderboard import leaderboard
from common.pseudo import with_pseudo_rows
from tests.common.toy import ToyCompetition


def _train(cli, run_dir, *extra):
    argv = ["train", "--model", "toy_logreg", "--data-dir", cli.data, "--run-dir", run_dir, "--folds", 3]
    return cli(*argv, "--quiet", *extra)


@pytest.fixture
def source(cli):
    code, _, err = _train(cli, "runs/toy/lr")
    assert code == 0, err
    return cli


def test_pseudo_rows_are_trained_on_never_scored_and_the_folds_are_the_sources(source, tmp_path):
    cli = source
    code, out, err = cli("pseudo", "--run-dir", "runs/toy/lr", "--threshold", 0.8, "--quiet")
    assert code == 0, err
    assert (
        out[0].startswith("lr (toy_logreg, CV accuracy ") and "confidence >= 0.8, of 50: fold 0: " in out[0]
    )
    assert out[-1].startswith("CV accuracy: ")
    src, new = tmp_path / "runs/toy/lr", tmp_path / "runs/toy/lr-pseudo"
    config = yaml.safe_load((new / "config.yaml").read_text())
    source_config = yaml.safe_load((src / "config.yaml").read_text())
    pseudo = config["pseudo"]
    assert pseudo["from"] == "runs/toy/lr" and pseudo["threshold"] == 0.8 and pseudo["test_rows"] == 50
    for key in ("model", "params", "data", "folds_file", "classes", "seed"):
        assert config[key] == source_config[key]
    for k in range(3):
        # fold k's pseudo rows are the test rows the source's fold-k model is sure of
        confident = int((np.load(src / f"fold{k}/test.npy").max(axis=1) >= 0.8).sum())
        assert pseudo["rows"][str(k)] == confident > 0
        metrics = json.loads((new / f"fold{k}/metrics.json").read_text())
        before = json.loads((src / f"fold{k}/metrics.json").read_text())
        assert metrics["n_valid"] == before["n_valid"] and metrics["n_train"] == before["n_train"] + confident
        # scored on exactly the source's fold-k rows: no pseudo row validated
        assert np.array_equal(np.load(new / f"fold{k}/oof_ids.npy"), np.load(src / f"fold{k}/oof_ids.npy"))
    assert np.array_equal(np.load(new / "oof_ids.npy"), np.load(src / "oof_ids.npy"))
    assert not any(i.startswith("pseudo:") for i in np.load(new / "oof_ids.npy"))
    manifest = json.loads((new / "run.json").read_text())
    assert any(
        name.endswith("test.csv") for name in manifest["inputs"]["train"]
    )  # test rows are training input
    assert len(pd.read_csv(new / "submission.csv")) == 50

    board = leaderboard(tmp_path / "runs", "toy").set_index("run")
    assert board.loc["lr-pseudo", "pseudo"].startswith("from lr (t=0.8, ~")
    assert board.loc["lr", "pseudo"] == ""
    code, out, err = cli("blend", "--runs", "runs/toy/lr", "runs/toy/lr-pseudo", "--data-dir", cli.data)
    assert code == 0, err  # same scored rows on the same folds: blendable


def test_a_rerun_resumes_and_another_threshold_needs_force(source, tmp_path):
    cli = source
    argv = ["pseudo", "--run-dir", "runs/toy/lr", "--threshold", 0.8, "--quiet"]
    assert cli(*argv)[0] == 0
    code, out, _ = cli(*argv)
    assert code == 0 and sum("already complete, skipped" in line for line in out) == 3
    code, _, err = cli(*argv[:3], "--threshold", 0.9, "--quiet")
    assert code == 2 and "other pseudo" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(*argv[:3], "--threshold", 0.9, "--quiet", "--force")
    assert code == 0, err
    assert (
        yaml.safe_load((tmp_path / "runs/toy/lr-pseudo/config.yaml").read_text())["pseudo"]["threshold"]
        == 0.9
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threshold", "0"], "--threshold 0.0: expected a probability in (0, 1]"),
        (["--threshold", "1.5"], "expected a probability"),
        (["--out", "runs/toy/lr"], "is the source run"),
    ],
)
def test_bad_requests_exit_2_with_one_line(source, argv, message):
    code, out, err = source("pseudo", "--run-dir", "runs/toy/lr", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_incomplete_runs_and_blends_are_refused(source, tmp_path):
    cli = source
    assert _train(cli, "runs/toy/part", "--fold", 0)[0] == 0
    code, _, err = cli("pseudo", "--run-dir", "runs/toy/part")
    assert code == 2 and "is not complete" in err
    assert _train(cli, "runs/toy/lr2", "--set", "C=0.1")[0] == 0
    assert cli("blend", "--runs", "runs/toy/lr", "runs/toy/lr2", "--data-dir", cli.data)[0] == 0
    code, _, err = cli("pseudo", "--run-dir", "runs/toy/blend")
    assert code == 2 and "is a blend" in err


def test_default_hooks_label_by_class_and_join_arrays():
    comp = ToyCompetition()
    proba = np.array([[0.1, 0.9], [0.6, 0.4]])
    labels, confidence = comp.pseudo_labels(proba, [3, 7])
    assert labels.tolist() == [7, 3] and confidence.tolist() == [0.9, 0.6]
    joined = comp.join_x(np.zeros((2, 4)), np.ones((3, 4)))
    assert joined.shape == (5, 4) and joined[2:].all()
    train = TrainData(
        X=np.zeros((2, 4)), y=np.array([0, 1]), ids=np.array(["a", "b"]), strata=np.array([0, 1])
    )
    data = with_pseudo_rows(train, joined, np.array([0, 1]), np.array(["t0", "t1", "t2"]), [2], [1])
    assert data.ids.tolist() == ["a", "b", "pseudo:t2"] and data.folds.tolist() == [0, 1, -1]
    assert data.y.tolist() == [0, 1, 1] and data.X[2].all()


def test_string_pseudo_labels_are_never_cut_to_the_training_width_and_empty_ones_are_dropped():
    from common.pseudo import select

    train = TrainData(
        X=np.zeros((2, 1)), y=np.array(["12", "3"]), ids=np.array([0, 1]), strata=np.array(["a", "a"])
    )
    data = with_pseudo_rows(train, np.zeros((4, 1)), np.array([0, 1]), np.array([7, 8]), np.array([0, 1]),
                            np.array(["123456", "9"]))  # fmt: skip
    assert list(data.y) == ["12", "3", "123456", "9"]

    class Strings:
        def pseudo_labels(self, proba, classes):
            return np.array(["", "45", "6"]), np.array([0.99, 0.99, 0.5])

    rows, labels = select(Strings(), None, None, 0.9)
    assert list(rows) == [1] and list(labels) == ["45"]


def test_a_pseudo_run_reconciles_with_the_contests_runtime_keys(source, monkeypatch):
    """The pseudo run's folder is checked with the contest's own ``RUNTIME_KEYS`` (keys that only say where to
    read or cache may differ between re-runs), as ``train`` checks its run's."""
    import common.pseudo as pseudo_module
    from common.competition import DataConfig

    class ToyData(DataConfig):
        RUNTIME_KEYS = DataConfig.RUNTIME_KEYS | {"scratch_dir"}

    monkeypatch.setattr(ToyCompetition, "data_config", ToyData)
    seen = []
    real = pseudo_module.open_session

    def spy(*args, **kwargs):
        seen.append(kwargs.get("data_runtime_keys", args[8] if len(args) > 8 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(pseudo_module, "open_session", spy)
    code, _, err = source("pseudo", "--run-dir", "runs/toy/lr", "--threshold", 0.8, "--quiet")
    assert code == 0, err
    assert seen == [ToyData.RUNTIME_KEYS]

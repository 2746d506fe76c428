"""The shared CLI through the toy contest: in-process (the ``cli`` fixture) and once as a subprocess."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.common.conftest import run_python

FAST_MLP = ["--set", "epochs=2", "--set", "lr=0.05"]


def _train(cli, run_dir, model="toy_logreg", *extra):
    return cli(
        "train",
        "--model",
        model,
        "--data-dir",
        cli.data,
        "--run-dir",
        run_dir,
        "--folds",
        3,
        "--quiet",
        *extra,
    )


def _snapshot(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_train_all_folds(cli, tmp_path):
    code, out, err = _train(cli, "runs/mlp", "toy_mlp", *FAST_MLP)
    assert code == 0, err
    assert out[-1].startswith("CV accuracy: ")
    assert float(out[-1].split(": ")[1]) > 0.4
    run = tmp_path / "runs/mlp"
    sub = pd.read_csv(run / "submission.csv")
    assert list(sub.columns) == ["id", "label"] and len(sub) == 50
    assert len(list((tmp_path / "submissions/toy").glob("toy_mlp-cv*.csv"))) == 1
    config = yaml.safe_load((run / "config.yaml").read_text())
    trainer = config["params"]["trainer"]
    assert config["model"] == "toy_mlp" and trainer["epochs"] == 2 and trainer["quiet"]
    assert config["data"] == {
        "test_file": None,
        "folds_from": "kfold",
        "holdout_share": 0.2,
        "adversarial_dir": None,
    }
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["schema"] == 2 and set(manifest["folds"]) == {"0", "1", "2"}
    assert {"command", "git", "versions", "device", "seeds", "inputs", "folds_file"} <= set(manifest)
    assert "train.csv" in next(iter(manifest["inputs"]["train"])) and manifest["versions"]["torch"]
    assert {f"fold{k}" for k in range(3)} <= {p.name for p in run.iterdir()}
    assert (tmp_path / "runs/toy/folds").is_dir()


def test_one_fold_at_a_time_then_merge(cli, tmp_path):
    run = tmp_path / "runs/lr"
    code, out, _ = _train(cli, run, "toy_logreg", "--fold", 1)
    assert code == 0 and out[-1].startswith("fold 1 accuracy")
    assert not (run / "cv.json").exists() and not (run / "fold0").exists()
    assert _train(cli, run, "toy_logreg", "--fold", 0)[0] == 0
    assert not (run / "cv.json").exists()
    code, out, _ = _train(cli, run, "toy_logreg", "--fold", 2)  # the last fold merges
    assert code == 0 and out[-1].startswith("CV accuracy")
    first = (run / "oof.npy").read_bytes()
    folds_before = {k: v for k, v in _snapshot(run).items() if k.startswith("fold")}
    stamps = {p: p.stat().st_mtime_ns for p in run.glob("fold*/*")}
    code, out, err = _train(cli, run, "toy_logreg")  # all complete: skipped, merged again
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in run.glob("fold*/*")} == stamps  # nothing retrained
    assert {k: v for k, v in _snapshot(run).items() if k.startswith("fold")} == folds_before
    assert out[-1].startswith("CV accuracy") and (run / "oof.npy").read_bytes() == first
    assert sum("already complete, skipped" in line for line in out) == 3
    assert len(list((tmp_path / "submissions/toy").glob("toy_logreg-cv*.csv"))) == 2  # both merges archived
    code, _, err = _train(cli, run, "toy_logreg", "--fold", 7)
    assert code == 2 and "--fold 7 does not exist" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "toy_cnn"], "unknown model 'toy_cnn' for toy; known models: toy_logreg, toy_mlp"),
        (["--model", "toy_mlp", "--set", "hiden=3"], "unknown config key(s) ['hiden']"),
        (["--model", "toy_mlp", "--set", "epochs=two"], "invalid value for model.trainer.epochs"),
        (
            ["--model", "toy_mlp", "--set", "epochs=-1"],
            "model.trainer.epochs: Input should be greater than or equal to 1",
        ),
        (
            ["--model", "toy_mlp", "--set", "epochs=0"],
            "model.trainer.epochs: Input should be greater than or equal to 1",
        ),
        (["--model", "toy_mlp", "--set", "batch_size=0"], "model.trainer.batch_size"),
        (
            ["--model", "toy_mlp", "--set", "valid_size=2"],
            "model.trainer.valid_size: Input should be less than 1",
        ),
        (["--model", "toy_mlp", "--set", "lr=nan"], "model.trainer.lr: Input should be a finite number"),
        (["--model", "toy_mlp", "--set", "scheduler=bogus"], "model.trainer.scheduler: Input should be"),
        (["--model", "toy_mlp", "--set", "device=cuda:3"], "device 'cuda:3'"),
        (["--model", "toy_logreg", "--set", "C=-1"], "model.C: Input should be greater than 0"),
        (["--model", "toy_mlp", "--fold", "x"], "--fold expects a fold number, 'all' or 'full'"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, tmp_path, argv, message):
    code, out, err = cli("train", "--data-dir", cli.data, "--run-dir", "runs/x", *argv)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "runs/x").exists()


def test_missing_data_dir(cli, tmp_path):
    code, _, err = cli("train", "--model", "toy_logreg", "--data-dir", tmp_path / "nope", "--run-dir", "r")
    assert code == 2 and "data directory not found" in err and "nope" in err
    assert not (tmp_path / "r").exists()


def test_run_dir_of_another_model_is_refused(cli, tmp_path):
    run = tmp_path / "runs/shared"
    assert _train(cli, run, "toy_logreg")[0] == 0
    before = _snapshot(run)
    code, _, err = _train(cli, run, "toy_mlp", *FAST_MLP)
    assert code == 2 and "holds a run of model 'toy_logreg', not 'toy_mlp'" in err
    assert _snapshot(run) == before


def test_changed_params_on_an_existing_run(cli, tmp_path):
    run = tmp_path / "runs/lr"
    assert _train(cli, run, "toy_logreg", "--fold", 0)[0] == 0
    before = _snapshot(run)
    code, _, err = _train(cli, run, "toy_logreg", "--set", "C=0.5")
    assert code == 2 and "other params" in err and "'C': (1.0, 0.5)" in err
    assert _snapshot(run) == before
    code, out, err = _train(cli, run, "toy_logreg", "--set", "C=0.5", "--force")
    assert code == 0, err
    assert yaml.safe_load((run / "config.yaml").read_text())["params"]["C"] == 0.5


def test_a_param_added_since_the_run_counts_as_its_default(cli, tmp_path):
    """A run written before a model gained a key (its config.yaml lacks it) goes on as the same params: the key
    counts as its default. A stored value other than the default is still a change."""
    run = tmp_path / "runs/older"
    assert _train(cli, run, "toy_mlp", *FAST_MLP, "--fold", 0)[0] == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    del config["params"]["trainer"]["decay_ratio"]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    code, _, err = _train(cli, run, "toy_mlp", *FAST_MLP, "--fold", 1)
    assert code == 0, err
    config["params"]["trainer"]["decay_ratio"] = 0.5
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    code, _, err = _train(cli, run, "toy_mlp", *FAST_MLP, "--fold", 2)
    assert code == 2 and "other params" in err and "decay_ratio" in err


def test_changed_params_with_a_crashed_fold_is_refused(cli, tmp_path):
    """A fold's resume checkpoint from other params must not be resumed with new ones."""
    run = tmp_path / "runs/mlp"
    assert _train(cli, run, "toy_mlp", *FAST_MLP, "--fold", 0)[0] == 0
    (run / "fold0" / "metrics.json").unlink()
    (run / "fold0" / "last.pt").write_bytes(b"a checkpoint of the old params")
    code, _, err = _train(cli, run, "toy_mlp", *FAST_MLP, "--set", "hidden=8", "--fold", 0)
    assert code == 2 and "other params" in err


def test_predict(cli, tmp_path):
    assert _train(cli, "runs/lr", "toy_logreg")[0] == 0
    code, out, err = cli("predict", "--run-dir", "runs/lr", "--data-dir", cli.data, "--out", "pred.csv")
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert pred.equals(pd.read_csv(tmp_path / "runs/lr/submission.csv"))
    code, _, err = cli("predict", "--run-dir", "runs/lr", "--data-dir", cli.data, "--out", "pred.csv")
    assert code == 2 and "refusing to overwrite" in err
    code, _, err = cli("predict", "--run-dir", "runs/none", "--data-dir", cli.data, "--out", "p2.csv")
    assert code == 2 and "not a run directory" in err


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_tune_then_train_with_best_config(cli, tmp_path, storage):
    storage = (
        str(tmp_path / "optuna.journal") if storage == "journal" else f"sqlite:///{tmp_path / 'optuna.db'}"
    )
    code, out, err = cli(
        "tune", "--model", "toy_mlp", "--data-dir", cli.data, "--trials", 2, "--storage", storage,
        "--folds", 3, "--folds-used", 1, "--set", "epochs=2", "--out", "best.yaml", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert out[-1].startswith("best accuracy: ")
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert {"lr", "hidden"} <= set(best) and best["epochs"] == 2
    assert not list((tmp_path / "runs/toy/tune").rglob("trial*"))  # trial folders are cleaned up
    code, out, err = _train(cli, "runs/best", "toy_mlp", "--config", "best.yaml")
    assert code == 0, err
    params = yaml.safe_load((tmp_path / "runs/best/config.yaml").read_text())["params"]
    assert params["trainer"]["lr"] == best["lr"] and params["hidden"] == best["hidden"]
    assert params["trainer"]["epochs"] == 2


def test_models_verb(cli):
    code, out, _ = cli("models")
    assert code == 0 and out == ["toy_logreg", "toy_mlp"]


def test_subprocess_train(tmp_path, toy_dir):
    result = run_python(
        ["-m", "tests.common.toy", "train", "--model", "toy_logreg", "--data-dir", str(toy_dir),
         "--run-dir", "run", "--folds", "2", "--quiet"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("CV accuracy: ")
    assert (tmp_path / "run/submission.csv").is_file()
    assert "Traceback" not in result.stderr


def test_full_refit_writes_its_own_submission_without_touching_folds(cli, tmp_path):
    run = tmp_path / "runs/full"
    code, out, err = _train(cli, run, "toy_mlp", "--fold", "full", "--set", "epochs=2")
    assert code == 0, err
    assert (run / "full/metrics.json").is_file() and (run / "full/estimator.json").is_file()
    assert not list(run.glob("fold*")) and not (run / "cv.json").exists()
    sub = pd.read_csv(run / "submission-full.csv")
    assert list(sub.columns) == ["id", "label"] and len(sub) == len(np.load(run / "full/test.npy"))
    assert json.loads((run / "full/metrics.json").read_text())["n_train"] == 200
    code, out, _ = _train(cli, run, "toy_mlp", "--fold", "full", "--set", "epochs=2")
    assert code == 0 and "already complete" in out[-1]


def test_full_refit_without_test_file_is_an_error(cli, tmp_path):
    (Path(cli.data) / "test.csv").unlink()
    code, _, err = _train(cli, tmp_path / "runs/nofull", "toy_logreg", "--fold", "full")
    assert code == 2 and "no test file" in err
    assert not (tmp_path / "runs/nofull/full").exists()


def test_force_with_changed_params_retrains_from_a_clean_run(cli, tmp_path):
    run = tmp_path / "runs/lr"
    assert _train(cli, run, "toy_logreg")[0] == 0
    assert _train(cli, run, "toy_logreg", "--fold", "full")[0] == 0
    code, out, err = _train(cli, run, "toy_logreg", "--fold", 0, "--force", "--set", "C=0.001")
    assert code == 0, err
    # only fold 0 exists now: the other folds, the refit and the merged outputs were of the old params
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == ["fold0"]
    assert not (run / "cv.json").exists() and not (run / "submission.csv").exists()
    assert out[-1].startswith("fold 0 accuracy")
    code, _, err = _train(
        cli, run, "toy_logreg", "--fold", "full", "--set", "C=1"
    )  # changed again, no --force
    assert code == 2 and "other params" in err


def test_another_test_file_repredicts_a_trained_run_instead_of_refusing_it(cli, tmp_path):
    """``test_file`` says where to read, not what was trained on: a re-run with test B re-predicts from the fold
    models (no retraining, no --force) and records the new data config."""
    run = tmp_path / "runs/lr"
    assert _train(cli, run, "toy_logreg")[0] == 0
    folds = {k: (run / f"fold{k}/metrics.json").stat().st_mtime_ns for k in range(3)}
    test_b = pd.read_csv(Path(cli.data) / "test.csv").iloc[:20]
    test_b.assign(id=[f"b{i:05d}" for i in range(20)]).to_csv(Path(cli.data) / "test_b.csv", index=False)
    code, out, err = _train(cli, run, "toy_logreg", "--set", "test_file=test_b.csv")
    assert code == 0, err
    assert any("re-predicted the test probabilities of 3 trained fold model(s)" in line for line in out)
    assert {k: (run / f"fold{k}/metrics.json").stat().st_mtime_ns for k in range(3)} == folds
    assert pd.read_csv(run / "submission.csv")["id"].tolist() == [f"b{i:05d}" for i in range(20)]
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["test_file"] == "test_b.csv"
    # a key that changes what is trained still refuses
    code, _, err = _train(cli, run, "toy_logreg", "--set", "test_file=test_b.csv", "--set", "C=0.5")
    assert code == 2 and "other params" in err


def test_runtime_trainer_keys_may_differ_on_a_rerun(cli, tmp_path):
    """``TrainerConfig.RUNTIME_KEYS`` (``compile`` among them: it runs the same model faster) say how a run
    executes, not what it computes: a re-run that differs only in them reuses the complete folds."""
    from common.trainer import TrainerConfig

    assert {"quiet", "num_workers", "device", "compile", "log_every_steps"} <= TrainerConfig.RUNTIME_KEYS
    run = tmp_path / "runs/mlp"
    assert _train(cli, run, "toy_mlp", *FAST_MLP, "--fold", 0)[0] == 0
    runtime = ["--set", "compile=true", "--set", "num_workers=1", "--set", "log_every_steps=5"]
    code, out, err = _train(cli, run, "toy_mlp", *FAST_MLP, "--fold", 0, *runtime)
    assert code == 0, err
    assert "already complete, skipped" in out[-1]

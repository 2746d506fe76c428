"""Optuna around the shared CV: the objective, pruning between folds, best params YAML, and several worker
processes sharing one study through a journal file (the default), SQLite and a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
import yaml

from common import tuning
from common.errors import UserError
from common.folds import get_folds
from tests.common.conftest import subprocess_env
from tests.common.postgres import find_bin_dir, postgres_server

WORKER_TRIALS = 3


def test_tune_in_process(toy_data, tmp_path):
    comp, data, _ = toy_data
    folds = get_folds(tmp_path / "folds", data.ids, data.strata, 3, 42)[0]
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    result = tuning.tune(
        comp, "toy_logreg", data, folds, n_trials=3, storage=storage, folds_used=2,
        out=tmp_path / "best.yaml", work_root=tmp_path / "work",
    )  # fmt: skip
    study = result["study"]
    assert len(study.trials) == 3
    assert all(len(t.user_attrs["fold_scores"]) == 2 for t in study.trials)
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best == {"C": study.best_params["C"]}
    assert result["best_value"] == study.best_value
    assert not list((tmp_path / "work").glob("trial*"))
    # resuming the study adds trials instead of starting over
    tuning.tune(comp, "toy_logreg", data, folds, n_trials=1, storage=storage, out=tmp_path / "b2.yaml",
                work_root=tmp_path / "work")  # fmt: skip
    assert len(optuna.load_study(study_name="toy-toy_logreg", storage=storage).trials) == 4
    with pytest.raises(UserError, match="--folds-used must be between 1 and 3"):
        tuning.tune(comp, "toy_logreg", data, folds, n_trials=1, storage=storage, folds_used=4)
    with pytest.raises(UserError, match="not a database URL"):
        tuning.make_study("s", "mysql+nosuchdriver://user@host/db")
    with pytest.raises(UserError, match="expected a journal file path or a database URL"):
        tuning.make_study("s", "ftp://host/file")


def test_each_trial_reports_the_running_mean_after_each_fold(toy_data, tmp_path):
    """The step Optuna sees means the same in every trial: folds done - 1, the value their mean score."""
    comp, data, _ = toy_data
    folds = get_folds(tmp_path / "folds", data.ids, data.strata, 3, 42)[0]
    result = tuning.tune(comp, "toy_mlp", data, folds, n_trials=1, storage=str(tmp_path / "j.journal"),
                         base_params={"trainer": {"epochs": 1, "quiet": True}}, out=tmp_path / "b.yaml",
                         work_root=tmp_path / "work")  # fmt: skip
    trial = result["study"].trials[0]
    scores = trial.user_attrs["fold_scores"]
    assert len(scores) == 3
    assert trial.intermediate_values == pytest.approx(
        {0: scores[0], 1: sum(scores[:2]) / 2, 2: sum(scores) / 3}
    )


def test_a_poor_trial_is_pruned_between_folds(toy_data, tmp_path):
    comp, data, _ = toy_data
    folds = get_folds(tmp_path / "folds", data.ids, data.strata, 3, 42)[0]
    storage = str(tmp_path / "p.journal")
    study = tuning.make_study("toy-toy_logreg", storage)
    for _ in range(3):  # three finished trials that scored far better at every step
        study.add_trial(optuna.trial.create_trial(params={"C": 1.0}, distributions={"C": optuna.distributions.FloatDistribution(1e-3, 10.0, log=True)},
                                                  value=0.99, intermediate_values={0: 0.99, 1: 0.99, 2: 0.99}))  # fmt: skip
    result = tuning.tune(comp, "toy_logreg", data, folds, n_trials=1, storage=storage, out=tmp_path / "b.yaml",
                         work_root=tmp_path / "work")  # fmt: skip
    last = result["study"].trials[-1]
    assert last.state == optuna.trial.TrialState.PRUNED
    assert len(last.user_attrs["fold_scores"]) == 1  # stopped after its first fold


def _workers(tmp_path, toy_dir, storage: str, n: int = 2) -> None:
    """Start ``n`` tune workers at once against ``storage`` and wait for all of them."""
    procs = []
    for i in range(n):
        args = [
            sys.executable, "-m", "tests.common.toy", "tune", "--model", "toy_logreg", "--data-dir", str(toy_dir),
            "--trials", str(WORKER_TRIALS), "--storage", storage, "--folds", "3", "--folds-used", "2",
            "--study-name", "shared", "--seed", "42", "--out", str(tmp_path / f"best{i}.yaml"), "--quiet",
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(
                args,
                cwd=tmp_path,
                env=subprocess_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]


def _check_shared_study(storage, n: int = 2) -> None:
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.trials
    assert len(trials) == n * WORKER_TRIALS  # every worker's trials, none lost
    assert sorted(t.number for t in trials) == list(range(n * WORKER_TRIALS))  # unique numbers
    finished = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    )  # the MedianPruner may prune
    assert all(t.state in finished for t in trials), [t.state.name for t in trials]
    assert len({t._trial_id for t in trials}) == len(trials)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_workers_share_a_local_study(tmp_path, toy_dir, kind):
    storage = str(tmp_path / "shared.journal") if kind == "journal" else f"sqlite:///{tmp_path / 'shared.db'}"
    _workers(tmp_path, toy_dir, storage)
    _check_shared_study(tuning.open_storage(storage))


@pytest.fixture
def postgres_url():
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{message}; CI must install them (apt-get install -y postgresql)")
        pytest.skip(f"SKIPPED LOUDLY: {message}; install Debian's `postgresql` package to run this test")
    with postgres_server(bin_dir) as url:
        yield url


def test_two_workers_share_a_postgres_study(tmp_path, toy_dir, postgres_url):
    _workers(tmp_path, toy_dir, postgres_url)
    _check_shared_study(tuning.open_storage(postgres_url))


@pytest.mark.parametrize(
    "nested",
    [
        {"trainer": {"epochs": 2, "batch_size": 16}},
        {"model": {"trainer": {"epochs": 2, "batch_size": 16}}},
    ],
)
def test_fixed_params_of_a_nested_config_reach_best_yaml(cli, tmp_path, nested):
    """A nested ``--config`` fixes params of every trial and of the best-params YAML, so that ``train --config
    best.yaml`` trains what was tuned (not the defaults of the keys it fixed)."""
    (tmp_path / "fixed.yaml").write_text(yaml.safe_dump(nested))
    code, _, err = cli(
        "tune", "--model", "toy_mlp", "--data-dir", cli.data, "--trials", 1, "--storage", tmp_path / "o.journal",
        "--folds", 3, "--folds-used", 1, "--config", "fixed.yaml", "--out", "best.yaml", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["epochs"] == 2 and best["batch_size"] == 16 and {"lr", "hidden"} <= set(best)
    code, _, err = cli(
        "train", "--model", "toy_mlp", "--data-dir", cli.data, "--run-dir", "runs/best", "--folds", 3,
        "--fold", 0, "--config", "best.yaml", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    trainer = yaml.safe_load((tmp_path / "runs/best/config.yaml").read_text())["params"]["trainer"]
    assert trainer["epochs"] == 2 and trainer["batch_size"] == 16 and trainer["lr"] == best["lr"]

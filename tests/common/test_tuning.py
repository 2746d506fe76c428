"""Optuna around the shared CV: the objective, pruning, best params YAML, and several worker processes sharing
one study through SQLite and through a real PostgreSQL server."""

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
        tuning.make_study("s", "not a url")


def test_pruning_reporter_prunes_a_poor_trial(tmp_path):
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'p.db'}",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
        direction="maximize",
    )
    for value in (0.9, 0.1):
        trial = study.ask()
        reporter = tuning.PruningReporter(trial)
        if value < 0.5:
            with pytest.raises(optuna.TrialPruned):
                reporter.epoch_callback(0, {"valid_score": value})
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            reporter.epoch_callback(0, {"valid_score": value})
            reporter.epoch_callback(1, {"train_loss": 1.0})  # no score: nothing reported
            assert reporter.step == 1
            study.tell(trial, value)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]


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


def _check_shared_study(storage: str, n: int = 2) -> None:
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


def test_two_workers_share_a_sqlite_study(tmp_path, toy_dir):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    _workers(tmp_path, toy_dir, storage)
    _check_shared_study(storage)


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
    _check_shared_study(postgres_url)

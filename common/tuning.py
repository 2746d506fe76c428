"""Optuna around the same CV function that ``train`` uses.

The search space is declared next to each model as ``search_space(trial) -> dict`` (a staticmethod). The objective
is the mean score of the first ``folds_used`` folds of the shared split; deep models report their per-epoch
validation score through the trainer's callback (so the MedianPruner can stop a poor trial mid-fold), others report
once per fold. Storage is SQLite under ``runs/optuna.db`` by default; any Optuna storage URL (PostgreSQL for
several workers on several machines) works, and every worker pointed at the same study shares its trials.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy.exc
import yaml

from common import cv
from common.atomic import write_text
from common.competition import Competition, TrainData
from common.errors import UserError
from common.registry import create_model, get_model_entry

DEFAULT_STORAGE = "sqlite:///runs/optuna.db"


class PruningReporter:
    """Feeds one trial's intermediate scores to Optuna, one step per epoch (deep models) or per fold."""

    def __init__(self, trial: optuna.Trial, greater_is_better: bool = True) -> None:
        self.trial = trial
        self.step = 0
        self.sign = 1.0 if greater_is_better else -1.0

    def report(self, value: float) -> None:
        self.trial.report(float(value), self.step)
        self.step += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {self.step - 1} with value {value:.5f}")

    def epoch_callback(self, epoch: int, record: dict) -> None:
        if "valid_score" in record:
            self.report(record["valid_score"])


def make_study(
    study_name: str, storage: str | None = None, seed: int = 42, greater_is_better: bool = True
) -> optuna.Study:
    """Create or load the study. Workers started together on a fresh storage race to create its tables (a unique
    violation or "already exists" in all but one of them): such errors are retried, the tables are then there."""
    storage = storage or DEFAULT_STORAGE
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # SQLite: wait for a lock held by another worker instead of failing at once ("database is locked")
    engine_kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
    attempts = 8
    for attempt in range(attempts):
        try:
            return optuna.create_study(
                study_name=study_name,
                storage=optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs),
                load_if_exists=True,
                direction="maximize" if greater_is_better else "minimize",
                # a seed of its own per worker process: workers sharing a study with one seed would propose the
                # same trials (so a study is reproducible only in its first trials of a single worker: seed + pid)
                sampler=optuna.samplers.TPESampler(seed=seed + os.getpid()),
                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
            )
        except sqlalchemy.exc.ArgumentError as exc:
            raise UserError(f"--storage {storage!r} is not a database URL ({exc})") from None
        except sqlalchemy.exc.SQLAlchemyError as exc:
            if attempt == attempts - 1:
                detail = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
                raise UserError(f"cannot open the Optuna storage {storage!r}: {detail}") from None
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def tune(
    competition: Competition,
    model_name: str,
    data: TrainData,
    folds: np.ndarray,
    *,
    base_params: dict[str, Any] | None = None,
    n_trials: int = 20,
    storage: str | None = None,
    study_name: str | None = None,
    folds_used: int | None = None,
    seed: int = 42,
    timeout: float | None = None,
    out: str | Path | None = None,
    work_root: str | Path | None = None,
) -> dict:
    """Run ``n_trials`` trials in this process; return the best value and where the best params YAML went."""
    entry = get_model_entry(model_name)
    space = getattr(entry.cls, "search_space", None)
    if space is None:
        raise UserError(f"model {model_name!r} declares no search_space; nothing to tune")
    base_params = dict(base_params or {})
    study_name = study_name or f"{competition.name}-{model_name}"
    work_root = Path(work_root) if work_root else Path("runs") / competition.name / "tune" / study_name
    fold_list = cv.fold_numbers(folds)
    if folds_used is not None:
        if not 1 <= folds_used <= len(fold_list):
            raise UserError(f"--folds-used must be between 1 and {len(fold_list)}, got {folds_used}")
        fold_list = fold_list[:folds_used]
    study = make_study(study_name, storage, seed, competition.greater_is_better)

    def objective(trial: optuna.Trial) -> float:
        params = {**base_params, **space(trial)}
        model = create_model(model_name, **params)
        reporter = PruningReporter(trial, competition.greater_is_better)
        trial_dir = work_root / f"trial{trial.number}"
        scores: list[float] = []
        trial.set_user_attr("params", _plain(params))
        callbacks = [reporter.epoch_callback]
        try:
            for fold in fold_list:
                steps_before = reporter.step
                metrics = cv.run_fold(
                    model,
                    data,
                    folds,
                    fold,
                    trial_dir,
                    competition.score,
                    None,
                    metric_name=competition.metric_name,
                    force=True,  # a trial folder left by a killed run of a reset study is never reused
                    callbacks=callbacks,
                )
                scores.append(metrics["score"])
                trial.set_user_attr("fold_scores", scores)
                if reporter.step == steps_before:  # no per-epoch reports: report the running mean per fold
                    reporter.report(float(np.mean(scores)))
        finally:
            shutil.rmtree(trial_dir, ignore_errors=True)
        return float(np.mean(scores))

    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=())
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise UserError(f"study {study_name!r} has no completed trial yet")
    best = study.best_trial
    best_params = best.user_attrs.get("params", {**base_params, **best.params})
    out_path = Path(out) if out else work_root / "best.yaml"
    header = (
        f"# best of study {study_name}: {competition.metric_name} {best.value:.5f} (trial {best.number})\n"
    )
    write_text(out_path, header + yaml.safe_dump(_plain(best_params), sort_keys=True))
    return {
        "best_value": float(best.value),
        "best_params": best_params,
        "best_params_path": out_path,
        "study": study,
    }


def _plain(params: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}

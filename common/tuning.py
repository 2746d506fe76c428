"""Optuna around the same CV function that ``train`` uses.

The search space is declared next to each model as ``search_space(trial) -> dict`` of flat keys (a staticmethod).
The objective is the mean score of the first ``folds_used`` folds of the shared split. After each completed fold
the running mean is reported to Optuna at step ``folds done - 1``: a step that means the same in every trial
(whatever its ``epochs`` or early stopping), so the MedianPruner compares like with like and stops a poor trial
between folds.

Storage: an Optuna journal file (``runs/optuna.journal`` by default; made for several worker processes on one
machine, no database locks to retry) or any database URL (PostgreSQL for workers on several machines). Every
worker pointed at the same storage and study name shares its trials.
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

from common import cv
from common.atomic import write_text
from common.competition import Competition, TrainData
from common.config import dump_yaml, flat_keys
from common.errors import UserError
from common.registry import build_model_config, create_model, get_model_entry
from common.store import RunStore

DEFAULT_STORAGE = "runs/optuna.journal"
_URL_SCHEMES = ("sqlite:", "postgresql", "mysql", "oracle", "mssql")


def is_database_url(storage: str) -> bool:
    """Whether ``storage`` names a database (else it is a journal file path)."""
    return storage.startswith(_URL_SCHEMES)


def open_storage(storage: str | None = None):
    """A journal file (a path) or an RDB storage (a URL)."""
    storage = storage or DEFAULT_STORAGE
    if storage.startswith(_URL_SCHEMES):
        if storage.startswith("sqlite:///"):
            Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # SQLite: wait for a lock held by another worker instead of failing at once ("database is locked")
        engine_kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
        attempts = 8
        for attempt in range(attempts):
            try:
                return optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs)
            except sqlalchemy.exc.ArgumentError as exc:
                raise UserError(f"--storage {storage!r} is not a database URL ({exc})") from None
            except sqlalchemy.exc.SQLAlchemyError as exc:
                # workers started together on a fresh database race to create its tables (a unique violation
                # or "already exists" in all but one): the tables are there on the next attempt
                if attempt == attempts - 1:
                    detail = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
                    raise UserError(f"cannot open the Optuna storage {storage!r}: {detail}") from None
                time.sleep(0.2 * (attempt + 1))
    if "://" in storage:
        raise UserError(
            f"--storage {storage!r}: expected a journal file path or a database URL ({', '.join(_URL_SCHEMES)}...)"
        )
    from optuna.storages.journal import JournalFileBackend

    path = Path(storage)
    if path.is_dir():
        raise UserError(f"--storage {storage}: a folder; expected a journal file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def make_study(
    study_name: str, storage: str | None = None, seed: int = 42, direction: str = "maximize"
) -> optuna.Study:
    return optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage),
        load_if_exists=True,
        direction=direction,
        # a seed of its own per worker process: workers sharing a study with one seed would propose the same
        # trials (so a study is reproducible only in its first trials of a single worker: seed + pid)
        sampler=optuna.samplers.TPESampler(seed=seed + os.getpid()),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
    )


def tune(
    competition: Competition,
    model_name: str,
    data: TrainData,
    folds: np.ndarray,
    *,
    base_values: dict[str, Any] | None = None,
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
    """Run ``n_trials`` trials in this process; return the best value and where the best params YAML went.

    ``base_params``: the model's resolved config (nested) every trial starts from; ``base_values``: the flat
    values the user fixed (YAML + ``--set``, data keys included), written with the searched ones to the YAML."""
    where = competition.models_module
    entry = get_model_entry(model_name, where)
    space = getattr(entry.cls, "search_space", None)
    if space is None:
        raise UserError(f"model {model_name!r} declares no search_space; nothing to tune")
    base = flat_keys(build_model_config(model_name, base_params or {}, where))
    base_values = dict(base_values or {})
    study_name = study_name or f"{competition.name}-{model_name}"
    work_root = Path(work_root) if work_root else Path("runs") / competition.name / "tune" / study_name
    fold_list = cv.fold_numbers(folds)
    if folds_used is not None:
        if not 1 <= folds_used <= len(fold_list):
            raise UserError(f"--folds-used must be between 1 and {len(fold_list)}, got {folds_used}")
        fold_list = fold_list[:folds_used]
    study = make_study(study_name, storage, seed, competition.metric.direction)

    def objective(trial: optuna.Trial) -> float:
        searched = space(trial)
        model = create_model(model_name, where=where, **{**base, **searched})
        store = RunStore(work_root / f"trial{trial.number}")
        scores: list[float] = []
        trial.set_user_attr("params", _plain({**base_values, **searched}))
        try:
            for step, fold in enumerate(fold_list):
                metrics = cv.run_fold(
                    model,
                    data,
                    folds,
                    fold,
                    store,
                    competition,
                    None,
                    force=True,  # a trial folder left by a killed run of a reset study is never reused
                    save_model=False,
                )
                scores.append(metrics["score"])
                trial.set_user_attr("fold_scores", scores)
                trial.report(float(np.mean(scores)), step)
                if step + 1 < len(fold_list) and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after {step + 1} fold(s) at {np.mean(scores):.5f}")
        finally:
            shutil.rmtree(store.path, ignore_errors=True)
        return float(np.mean(scores))

    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=())
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise UserError(f"study {study_name!r} has no completed trial yet")
    best = study.best_trial
    best_params = best.user_attrs.get("params", {**base_values, **best.params})
    out_path = Path(out) if out else work_root / "best.yaml"
    header = (
        f"# best of study {study_name}: {competition.metric.name} {best.value:.5f} (trial {best.number})\n"
    )
    write_text(out_path, header + dump_yaml(_plain(best_params)))
    return {
        "best_value": float(best.value),
        "best_params": best_params,
        "best_params_path": out_path,
        "study": study,
    }


def _plain(params: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}

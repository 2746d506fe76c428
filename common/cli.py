"""The command line every contest shares: ``train``, ``predict``, ``tune``, ``blend``, ``leaderboard``, ``models``,
plus the contest's own verbs (``synth``, ``pretrain``...). ``competitions/<name>/cli.py`` calls :func:`main` with its
:class:`~common.competition.Competition`.

Bad input raises :class:`~common.errors.UserError`, and a filesystem error (a read-only folder, a path that is a
file) is reported the same way: one line on stderr, exit code 2. Every value is validated when the config tree is
built, before any file is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from common import cv, distributed
from common.atomic import atomic_path
from common.competition import Competition, DataConfig, TrainData
from common.config import (
    _all_prefixes,
    _flatten_input,
    build_tree,
    flat_keys,
    load_yaml,
    parse_overrides,
    to_dict,
)
from common.errors import UserError
from common.fingerprint import changed, fingerprints
from common.folds import data_fingerprint, get_folds
from common.locks import Lock
from common.registry import create_model, default_config, get_model_entry, list_models, namespace
from common.store import FULL, RunStore, device_description, flat_params, new_manifest, open_run
from common.trainer import TrainerConfig


@dataclass
class Verb:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


def _say(*args) -> None:
    if distributed.is_main_process():
        print(*args, flush=True)


# ---------------------------------------------------------------------------------------------------- helpers
def data_dir_of(competition: Competition, args) -> Path:
    given = args.data_dir or os.environ.get("DATA_DIR")
    path = Path(given) if given else competition.default_data_dir()
    if not path.is_dir():
        raise UserError(f"data directory not found: {path} (pass --data-dir or set DATA_DIR)")
    return path


def check_model(competition: Competition, name: str) -> None:
    competition.import_models()
    known = list_models(module=namespace(competition.models_module))
    if name not in known:
        raise UserError(f"unknown model {name!r} for {competition.name}; known models: {', '.join(known)}")


@dataclass
class RunConfig:
    """The validated config tree of one run: the contest's data section and the model's config."""

    data: object
    model: object
    values: dict  # the values the user gave (YAML + --set), as given

    def model_params(self) -> dict:
        return to_dict(self.model)

    def given(self) -> dict:
        """The keys the user set, with their validated values (flat), e.g. for tune's best-params YAML. A nested
        YAML (``trainer: {lr: ...}``, ``model: {trainer: ...}``) is flattened as :func:`build_tree` reads it."""
        resolved = {**flat_keys(self.data), **flat_keys(self.model)}
        flat = _flatten_input(
            self.values, _all_prefixes({"data": type(self.data), "model": type(self.model)})
        )
        names = (k.split(".")[-1] for k in flat)
        return {name: resolved[name] for name in names if name in resolved}


def build_run_config(
    competition: Competition, model_name: str, config_file: str | None, overrides: Sequence[str] | None, args
) -> RunConfig:
    """Defaults <- ``--config`` YAML <- ``--set`` (flat keys routed to the data or model section); ``--seed`` seeds
    the model too unless a seed was set; ``--quiet`` silences the trainer. Validates every value."""
    entry = get_model_entry(model_name, competition.models_module)
    values = dict(load_yaml(config_file)) if config_file else {}
    given = parse_overrides(overrides)
    values.update(given)
    sections = {"data": competition.data_config, "model": entry.config_cls}
    tree = build_tree(sections, values, source=f"model {model_name!r}")
    model_cfg = tree["model"]
    trainer = getattr(model_cfg, "trainer", None)
    seed_given = any(k.split(".")[-1] == "seed" for k in values)
    target = trainer if trainer is not None and hasattr(trainer, "seed") else model_cfg
    if getattr(args, "seed", None) is not None and hasattr(target, "seed") and not seed_given:
        target.seed = args.seed
    if getattr(args, "quiet", False) and trainer is not None:
        trainer.quiet = True
    return RunConfig(tree["data"], model_cfg, values)


def make_model(competition: Competition, model_name: str, run_config: RunConfig):
    return create_model(model_name, where=competition.models_module, **run_config.model_params())


def check_data(model, data: TrainData) -> None:
    """The model's own check of the training data (``check_data``, optional), before anything is written."""
    check = getattr(model, "check_data", None)
    if check is not None:
        check(data.X, data.y)


def resolve_folds(data: TrainData, folds_dir: Path, n_folds: int, seed: int) -> tuple[np.ndarray, Path]:
    """The shared fold column: the contest's predefined split, or stratified k-fold saved once and reused (exact
    duplicate rows grouped into one fold)."""
    if data.folds is None:
        groups = data.groups
        if groups is not None:
            n_dup = len(groups) - len(np.unique(groups))
            if n_dup == 0:
                groups = None
            else:
                _say(
                    f"warning: {n_dup} training row(s) duplicate another row exactly; each set of duplicates is "
                    "kept in one fold so they do not inflate the CV score"
                )
        return get_folds(folds_dir, data.ids, data.strata, n_folds, seed, groups)
    path = folds_dir / f"folds-predefined-{data_fingerprint(data.ids, data.strata, data.folds)}.csv"
    if not path.exists() and distributed.is_main_process():
        import pandas as pd

        frame = pd.DataFrame(
            {"id": np.asarray(data.ids).astype(str), "label": data.strata, "fold": data.folds}
        )
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    return np.asarray(data.folds, dtype=np.int64), path


def apply_folds_from(competition: Competition, data: TrainData, test, data_cfg) -> TrainData:
    """``folds_from=adversarial``: the holdout of the most test-like rows as the data's predefined folds
    (:func:`common.adversarial.holdout_folds`); ``kfold``: the data as it is."""
    if getattr(data_cfg, "folds_from", "kfold") != "adversarial":
        return data
    from common import adversarial

    data = adversarial.holdout_folds(competition, data, test, data_cfg)
    _say(adversarial.describe_holdout(data, data_cfg.holdout_share))
    return data


#: params that name a file or folder a model reads besides the data (a pretrained checkpoint), whatever the model
MODEL_INPUT_PARAMS = ("pretrained", "pretrained_path")


def model_input_paths(model) -> dict[str, str]:
    """``{param: path}`` of the files and folders ``model`` reads besides the data: its params named in
    :data:`MODEL_INPUT_PARAMS` that are set, and what its ``input_paths()`` hook names (see
    :meth:`common.estimator.TorchEstimator.input_paths`)."""
    paths = {name: getattr(model, name, None) for name in MODEL_INPUT_PARAMS}
    hook = getattr(model, "input_paths", None)
    if callable(hook):
        paths.update(hook())
    return {name: str(path) for name, path in paths.items() if path}


def run_inputs(data: TrainData, test, model=None) -> dict:
    """Content fingerprints of every file and folder the run reads: the training and test data and the model's own
    inputs (``model_inputs``: :func:`model_input_paths`)."""
    return {
        "train": fingerprints(data.sources),
        "test": fingerprints(test.sources) if test is not None else {},
        "model_inputs": fingerprints(model_input_paths(model).values()) if model is not None else {},
    }


@dataclass
class Reuse:
    """What an existing run folder means for this command."""

    test_changed: list[str]
    manifest: dict | None
    #: the folder holds another layout, config or data and --force was given: clear it once the locks are held
    clear: str | None = None


def reconcile(
    store: RunStore,
    config: dict,
    inputs: dict,
    force: bool,
    data_defaults: dict | None = None,
    data_runtime_keys: Collection[str] = DataConfig.RUNTIME_KEYS,
    param_defaults: dict | None = None,
) -> Reuse:
    """Check that ``store`` may hold this run (same competition and model; same params, folds and training data
    unless ``force``, which asks for it to be cleared). A data key the stored config lacks (added to the code
    since) counts as its default from ``data_defaults``; the ``data_runtime_keys`` (the contest's
    ``DataConfig.RUNTIME_KEYS``: where to read or cache) may differ; a param the stored config lacks counts as
    its default from ``param_defaults`` (the model's own). Called under the run lock; writes nothing."""
    problem = store.layout_problem()
    if problem:
        if not force:
            raise UserError(f"{problem}; re-run it into a new --run-dir (or pass --force to retrain it here)")
        return Reuse([], None, clear="it has an older layout")
    old = store.read_config()
    if old is None:
        return Reuse([], None)
    if data_defaults and isinstance(old.get("data"), dict):
        old = {**old, "data": {**data_defaults, **old["data"]}}
    if param_defaults and isinstance(old.get("params"), dict):
        old = {**old, "params": {**flat_params(param_defaults), **flat_params(old["params"])}}
    for key in ("competition", "model"):
        if old.get(key) != config[key]:
            raise UserError(
                f"{store.path} holds a run of {key} {old.get(key)!r}, not {config[key]!r}; choose another --run-dir"
            )
    manifest = store.read_manifest() or {}
    recorded = manifest.get("inputs") or {}
    changed_keys = sorted(k for k in ("folds_file", "pseudo") if old.get(k) != config.get(k))
    if _trained_data(old.get("data"), data_runtime_keys) != _trained_data(
        config.get("data"), data_runtime_keys
    ):
        changed_keys = sorted([*changed_keys, "data"])
    if _computed(old.get("params") or {}) != _computed(config["params"]):
        changed_keys.append("params")
    data_changed = changed(recorded.get("train") or {}, inputs["train"])
    # a run recorded before model inputs were fingerprinted has nothing to compare them with
    model_changed = (
        changed(recorded.get("model_inputs") or {}, inputs.get("model_inputs") or {})
        if "model_inputs" in recorded
        else []
    )
    what_changed = " and ".join(
        what for what, names in (("data", data_changed), ("model inputs", model_changed)) if names
    )
    data_changed = [*data_changed, *model_changed]
    busy = store.folds_in_use()
    if (changed_keys or data_changed) and busy:
        fold, holder = next(iter(busy.items()))
        raise UserError(
            f"{store.path} is being trained with another config (fold {fold} by {holder}); "
            "wait for it or choose another --run-dir"
        )
    if (changed_keys or data_changed) and store.has_work():
        if force:
            return Reuse(
                [], None, clear=f"its {what_changed} changed" if data_changed else "its config changed"
            )
        if data_changed:
            raise UserError(
                f"{what_changed} changed since this run was trained ({', '.join(data_changed)} differ from "
                f"{store.path / 'run.json'}); pass --force to retrain it, or choose another --run-dir"
            )
        detail = ""
        if "params" in changed_keys:
            new_params, old_params = _computed(config["params"]), _computed(old.get("params") or {})
            diff = {k: (old_params.get(k), v) for k, v in new_params.items() if old_params.get(k) != v}
            detail = f" (params old -> new: {diff})"
        raise UserError(
            f"{store.path} has folds trained with other {' and '.join(changed_keys)}{detail}; "
            "pass --force to retrain them or choose another --run-dir"
        )
    test_changed = changed(recorded.get("test") or {}, inputs["test"]) if store.has_work() else []
    return Reuse(test_changed, manifest)


def _trained_data(data, runtime_keys: Collection[str]):
    """A run's data config without the keys that only say where to read or cache."""
    if not isinstance(data, dict):
        return data
    return {k: v for k, v in data.items() if k not in runtime_keys}


def _computed(params: dict) -> dict:
    """Flat params without the runtime keys (a re-run may differ in ``quiet`` or ``num_workers``)."""
    return {k: v for k, v in flat_params(params).items() if k not in TrainerConfig.RUNTIME_KEYS}


# ---------------------------------------------------------------------------------------------------- verbs
def add_train_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    p.add_argument("--model", required=True, help="a registered model name")
    p.add_argument(
        "--data-dir", help=f"contest files (default data/{competition.name}, or $DATA_DIR via make)"
    )
    p.add_argument("--run-dir", help=f"where artefacts go (default runs/{competition.name}/<model>)")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument(
        "--fold", default="all", help="a fold number, 'all' (default), or 'full' (refit on every row, no CV)"
    )
    p.add_argument(
        "--seed", type=int, default=42, help="seed of the folds and, unless --set seed=, the model"
    )
    p.add_argument("--config", help="YAML file of params, flat or nested (e.g. the best params from tune)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a data or model param"
    )
    p.add_argument("--force", action="store_true", help="retrain folds that are already complete")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--folds-dir", help=f"where fold files live (default runs/{competition.name}/folds)")
    p.add_argument(
        "--submissions-dir", default="submissions", help="archive of submissions (default submissions)"
    )


def _which_folds(args, folds: np.ndarray) -> list[int]:
    if args.fold in ("all", FULL):
        return cv.fold_numbers(folds)
    which = [int(args.fold)]
    if which[0] not in cv.fold_numbers(folds):
        raise UserError(f"--fold {which[0]} does not exist; folds are {cv.fold_numbers(folds)}")
    return which


def cmd_train(competition: Competition, args) -> int:
    if args.fold not in ("all", FULL) and not args.fold.lstrip("-").isdigit():
        raise UserError(f"--fold expects a fold number, 'all' or 'full', got {args.fold!r}")
    check_model(competition, args.model)
    run_config = build_run_config(competition, args.model, args.config, args.set, args)
    data_dir = data_dir_of(competition, args)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / competition.name / args.model
    folds_dir = Path(args.folds_dir) if args.folds_dir else Path("runs") / competition.name / "folds"
    store = RunStore(run_dir)
    if store.path.exists() and not store.path.is_dir():
        raise UserError(f"--run-dir {store.path} is a file, not a folder")
    data = competition.load_train(data_dir, run_config.data)
    test = competition.load_test(data_dir, run_config.data)
    model = make_model(competition, args.model, run_config)
    check_data(model, data)
    if args.fold == FULL and test is None:
        raise UserError(
            "--fold full only predicts the test set, and no test file was found in the data directory"
        )
    data = apply_folds_from(competition, data, test, run_config.data)
    folds, folds_file = resolve_folds(data, folds_dir, args.folds, args.seed)
    which = _which_folds(args, folds)
    config = {
        "competition": competition.name,
        "model": args.model,
        "n_folds": len(cv.fold_numbers(folds)),
        "seed": args.seed,
        "folds_file": str(folds_file),
        "data_dir": str(data_dir),
        "data": to_dict(run_config.data),
        "params": run_config.model_params(),
        "classes": cv.class_list(data.y),
    }
    inputs = run_inputs(data, test, model) if distributed.is_main_process() else {}
    targets = [FULL] if args.fold == FULL else which
    session = open_session(
        store,
        config,
        inputs,
        targets,
        model,
        args.seed,
        args.force,
        to_dict(competition.data_config()),
        competition.data_config.RUNTIME_KEYS,
    )
    try:
        if test is not None:
            repredict_changed_test(
                competition, store, session, model, folds, data, test, inputs, args.submissions_dir
            )
        if args.fold == FULL:
            return train_full(competition, model, data, test, store, args)
        results = cv.run_folds(
            model,
            data,
            folds,
            store,
            competition,
            which,
            test,
            force=args.force,
            on_fold_end=lambda k, m: report_fold(store, competition, k, m),
        )
    finally:
        session.release()
    finish_run(competition, store, data, folds, test, results, args.submissions_dir)
    return 0


def repredict_changed_test(
    competition: Competition,
    store: RunStore,
    session: Session,
    model,
    folds: np.ndarray,
    data: TrainData,
    test,
    inputs: dict,
    submissions_dir,
) -> None:
    """When only the test data changed since the run's folds were trained: new test probabilities from their
    stored models, no retraining. Folds this process is about to retrain (``--force``, or pending) are left to
    their training. Each re-predicted fold's lock (the one its training holds) is held meanwhile, so a concurrent
    ``train --force --fold k`` cannot swap a model while it is read; a fold another process trains is exit 2
    naming it, before anything is written.

    Re-predictions of one run take turns (``make -j5 folds`` after a test change starts five at once): a process
    waits for the one re-predicting, then re-reads ``run.json`` and has nothing left to do when the new test data
    is recorded there already.

    Every rank calls this: rank 0 decides which folds (and takes their locks), one broadcast tells the others, and
    every rank then predicts them, so the collectives of a prediction (a sharded evaluation, the street image
    cache's barrier) are met by every rank. Only rank 0 writes."""
    held: list = []

    def stale_folds() -> list:  # rank 0
        if not session.reuse.test_changed:
            return []
        held.append(_wait_for_repredictions(store))
        recorded = ((store.read_manifest() or {}).get("inputs") or {}).get("test") or {}
        if not changed(recorded, inputs["test"]):
            return []  # another process re-predicted (and recorded) this test data while this one waited
        complete = [k for k in [*cv.fold_numbers(folds), FULL] if store.is_complete(k)]
        unheld = [k for k in complete if k not in session.locks]
        held.extend(lock_folds(store, unheld, "re-predict the test set with"))
        # complete still, now that no other process can train them; this process's own are retrained instead
        return [k for k in unheld if store.is_complete(k)]

    try:
        stale = distributed.from_main(stale_folds, _device_of(model))
        if not stale:
            return
        done = cv.repredict_test(store, stale, test, cv.class_list(data.y))
        distributed.barrier()  # every rank has read the models before their locks go
        if not distributed.is_main_process():
            return
        _say(
            f"test data changed since this run ({', '.join(session.reuse.test_changed)}): re-predicted the "
            f"test probabilities of {len(done)} trained fold model(s), no retraining"
        )
        with store.run_lock("record the new test data"):
            store.update_manifest(inputs=inputs)
        if FULL in done:
            store.write_submission(
                competition,
                test,
                store.read_array(f"{FULL}/test.npy"),
                full=True,
                ledger_root=submissions_dir,
            )
    finally:
        for lock in reversed(held):  # the fold locks first: whoever waits for the turn finds them free
            lock.release()


def _wait_for_repredictions(store: RunStore) -> Lock:
    """The run's re-prediction lock, waited for (saying so) while another process re-predicts its test set."""
    lock = store.repredict_lock()
    try:
        return lock.acquire(timeout=0)
    except UserError:
        _say(f"waiting for {lock.holder()} to finish re-predicting the test set of {store.path}")
    return lock.acquire(timeout=-1)


def _device_of(model):
    """The device a model runs on (its trainer's), where a process group for it is joined."""
    return distributed.resolve_device(getattr(getattr(model, "trainer", None), "device", "auto"))


def lock_folds(store: RunStore, folds: Sequence, doing: str = "train") -> list:
    """The locks of ``folds``, all taken or (a :class:`UserError` naming the holder) none."""
    locks: list = []
    try:
        for k in folds:
            locks.append(store.fold_lock(k, doing).acquire())
    except UserError:
        for lock in locks:
            lock.release()
        raise
    return locks


@dataclass
class Session:
    """A run folder made ready to train into: how the folder was reconciled, and the fold locks held
    (``fold -> lock``)."""

    reuse: Reuse
    locks: dict

    def release(self) -> None:
        for lock in self.locks.values():
            lock.release()


def open_session(
    store: RunStore,
    config: dict,
    inputs: dict,
    targets: Sequence,
    model,
    seed: int,
    force: bool,
    data_defaults: dict | None = None,
    data_runtime_keys: Collection[str] = DataConfig.RUNTIME_KEYS,
) -> Session:
    """Under the run lock: check the folder may hold this run (:func:`reconcile`), lock the folds of ``targets``
    still to train, clear the folder when ``--force`` asks for it, write ``config.yaml`` and ``run.json``. Only
    the main process writes; the others get an empty session."""
    locks: dict = {}
    reuse = Reuse([], None)
    if not distributed.is_main_process():
        return Session(reuse, locks)
    store.prepare()
    with store.run_lock("write the run's config"):
        defaults = (
            default_config(model.model_name, where=type(model).__module__)
            if hasattr(model, "model_name")
            else None
        )
        reuse = reconcile(store, config, inputs, force, data_defaults, data_runtime_keys, defaults)
        pending = [k for k in targets if force or reuse.clear or not store.is_complete(k)]
        locks = dict(zip(pending, lock_folds(store, pending), strict=True))
        if reuse.clear:
            _say(f"{store.path}: {reuse.clear} and --force given: removing its old folds and outputs")
            store.clear_all()
        store.write_config(config)
        device = getattr(getattr(model, "trainer", None), "device", "cpu")
        manifest = new_manifest(
            {"folds": seed, "model": _model_seed(model)},
            {
                "train": inputs["train"],
                "test": (reuse.manifest or {}).get("inputs", {}).get("test", inputs["test"]),
                "model_inputs": inputs.get("model_inputs", {}),
            },
            config.get("folds_file"),
            device_description(device),
        )
        if reuse.manifest:  # keep when it was created and the seconds of folds already trained
            manifest.update(created=reuse.manifest.get("created"), folds=reuse.manifest.get("folds", {}))
        store.write_manifest(manifest)
    return Session(reuse, locks)


def finish_run(
    competition: Competition,
    store: RunStore,
    data: TrainData,
    folds: np.ndarray,
    test,
    results: list[dict],
    submissions_dir,
) -> dict | None:
    """Once every fold is complete: merge them, write (archive and record) the submission, print the fold scores
    and the CV score last. With folds still missing, print the last fold's score and return None."""
    if cv.missing_folds(store, folds):
        done = [r for r in results if not r.get("skipped")]
        if done:
            _say(f"fold {done[-1]['fold']} {competition.metric.name}: {done[-1]['score']:.5f}")
        return None
    if not distributed.is_main_process():
        return None
    with store.run_lock("merge the folds"):
        summary = cv.merge(store, data, folds, competition)
        if summary["test_proba"] is not None and test is not None:
            own, archive = store.write_submission(
                competition, test, summary["test_proba"], archive_root=submissions_dir
            )
            _say(f"submission: {own} (archived as {archive})")
    scores = ", ".join(f"{s:.5f}" for s in summary["fold_scores"])
    _say(f"folds: {scores}")
    _say(f"CV {competition.metric.name}: {summary['score']:.5f}")
    return summary


def _model_seed(model) -> int | None:
    trainer = getattr(model, "trainer", None)
    return getattr(trainer, "seed", None) if trainer is not None else getattr(model, "seed", None)


def report_fold(store: RunStore, competition: Competition, fold, metrics: dict) -> None:
    if metrics.get("skipped"):
        _say(
            f"fold {fold}: {competition.metric.name} {metrics['score']:.5f} (already complete, skipped; --force retrains)"
        )
        return
    _say(f"fold {fold}: {competition.metric.name} {metrics['score']:.5f} ({metrics['seconds']:.1f}s)")
    if distributed.is_main_process():
        with store.run_lock(f"record fold {fold}"):
            store.update_manifest(
                folds={str(fold): {"seconds": metrics["seconds"], "score": metrics["score"]}}
            )


def train_full(competition: Competition, model, data: TrainData, test, store: RunStore, args) -> int:
    result = cv.run_full(model, data, store, test, force=args.force)
    if result.get("skipped"):
        _say(f"{store.fold_dir(FULL)} is already complete, skipped; --force retrains")
        return 0
    if distributed.is_main_process():
        with store.run_lock("write the full refit's submission"):
            store.update_manifest(folds={FULL: {"seconds": result["seconds"]}})
            path, _ = store.write_submission(
                competition, test, result["test_proba"], full=True, ledger_root=args.submissions_dir
            )
        _say(f"full refit on {result['n_train']} rows in {result['seconds']:.1f}s; submission: {path}")
    return 0


def add_predict_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    p.add_argument("--run-dir", required=True, help="a run directory made by train")
    p.add_argument("--data-dir", help=f"contest files (default: the run's, else data/{competition.name})")
    p.add_argument("--test-file", help="which test file to predict (contest-specific default)")
    p.add_argument("--out", required=True, help="the submission CSV to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument(
        "--submissions-dir",
        default="submissions",
        help="where the submission ledger is (default submissions): --out is recorded there for lb-score",
    )


def cmd_predict(competition: Competition, args) -> int:
    from common.submission import write_frame

    store = open_run(args.run_dir)
    config = store.config
    if config.get("competition") != competition.name:
        raise UserError(f"{store.path} is a run of {config.get('competition')!r}, not {competition.name!r}")
    competition.import_models()
    n_folds = int(config.get("n_folds", 0))
    complete = [k for k in range(n_folds) if store.is_complete(k)]
    if not complete:
        raise UserError(f"{store.path} has no complete fold with a saved model")
    data_cfg = build_tree(
        {"data": competition.data_config}, {"data": config.get("data") or {}}, source=str(store.path)
    )["data"]
    if args.test_file:
        data_cfg = replace(data_cfg, test_file=args.test_file)
    if not args.data_dir and not os.environ.get("DATA_DIR") and config.get("data_dir"):
        args.data_dir = config["data_dir"]
    test = competition.load_test(data_dir_of(competition, args), data_cfg)
    if test is None:
        raise UserError(f"no test file found in {args.data_dir or competition.default_data_dir()}")
    classes = config.get("classes")
    parts = [cv.predict_proba(store.load_model(k), test.X, classes) for k in complete]
    proba = np.mean(parts, axis=0)
    write_frame(
        competition,
        test,
        competition.submission_frame(test, proba),
        args.out,
        overwrite=args.force,
        origin=store.submission_origin(args.submissions_dir, competition.name, "predict"),
    )
    _say(f"wrote {args.out} from {len(complete)} fold model(s)")
    return 0


def add_tune_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    p.add_argument("--model", required=True, help="a registered model name")
    p.add_argument("--data-dir", help=f"contest files (default data/{competition.name})")
    p.add_argument("--trials", type=int, default=20, help="trials this worker runs (default 20)")
    p.add_argument(
        "--storage",
        help="Optuna storage: a journal file path (default runs/optuna.journal; many workers on one machine) or a "
        "database URL such as postgresql://... (many machines)",
    )
    p.add_argument("--study-name", help="default <competition>-<model>")
    p.add_argument("--folds", type=int, default=5, help="number of folds of the shared split (default 5)")
    p.add_argument("--folds-used", type=int, default=None, help="score trials on the first K folds only")
    p.add_argument("--seed", type=int, default=42, help="seed of the folds and the sampler")
    p.add_argument("--config", help="YAML of fixed params under the searched ones")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="fix a data or model param"
    )
    p.add_argument("--timeout", type=float, default=None, help="stop this worker after this many seconds")
    p.add_argument("--out", help="best params YAML (default runs/<comp>/tune/<study>/best.yaml)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--folds-dir", help=f"where fold files live (default runs/{competition.name}/folds)")


def cmd_tune(competition: Competition, args) -> int:
    from common import tuning

    check_model(competition, args.model)
    run_config = build_run_config(competition, args.model, args.config, args.set, args)
    data_dir = data_dir_of(competition, args)
    folds_dir = Path(args.folds_dir) if args.folds_dir else Path("runs") / competition.name / "folds"
    data = competition.load_train(data_dir, run_config.data)
    check_data(make_model(competition, args.model, run_config), data)
    if run_config.data.folds_from == "adversarial":
        data = apply_folds_from(
            competition, data, competition.load_test(data_dir, run_config.data), run_config.data
        )
    folds, _ = resolve_folds(data, folds_dir, args.folds, args.seed)
    result = tuning.tune(
        competition,
        args.model,
        data,
        folds,
        base_values=run_config.given(),
        base_params=run_config.model_params(),
        n_trials=args.trials,
        storage=args.storage,
        study_name=args.study_name,
        folds_used=args.folds_used,
        seed=args.seed,
        timeout=args.timeout,
        out=args.out,
    )
    _say(f"best params: {result['best_params_path']}")
    _say(f"best {competition.metric.name}: {result['best_value']:.5f}")
    return 0


def add_blend_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    p.add_argument("--runs", nargs="+", required=True, help="run directories to blend (same folds and data)")
    p.add_argument("--data-dir", help=f"contest files (default data/{competition.name})")
    p.add_argument("--out", help=f"blend run directory (default runs/{competition.name}/blend)")
    p.add_argument(
        "--submissions-dir", default="submissions", help="archive of submissions (default submissions)"
    )
    p.add_argument(
        "--class-weights",
        action="store_true",
        help="also fit per-class probability weights on the OOF (macro-F1); reported in-sample and cross-fitted",
    )


def cmd_blend(competition: Competition, args) -> int:
    from common import blend

    out = Path(args.out) if args.out else Path("runs") / competition.name / "blend"
    blend.run_blend_cli(competition, [Path(r) for r in args.runs], data_dir_of(competition, args), out, args)
    return 0


def add_leaderboard_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    p.add_argument("--runs-root", default="runs", help="where runs live (default runs)")
    p.add_argument("--out", help="CSV to write (default runs/<comp>/leaderboard.csv)")
    p.add_argument(
        "--submissions-dir",
        default="submissions",
        help="archive and ledger of submissions (default submissions)",
    )


def cmd_leaderboard(competition: Competition, args) -> int:
    from common import leaderboard

    leaderboard.leaderboard_cli(Path(args.runs_root), competition.name, args.out, args.submissions_dir)
    return 0


def add_lb_score_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    from common.ledger import BOARDS

    p.add_argument(
        "--sub",
        required=True,
        help="the submission file you uploaded (one train, blend, full or predict wrote)",
    )
    p.add_argument("--score", required=True, type=float, help="the public leaderboard score it got")
    p.add_argument("--board", default="a", choices=BOARDS, help="which leaderboard: a (default) or b")
    p.add_argument(
        "--submissions-dir",
        default="submissions",
        help="where the submission ledger is (default submissions)",
    )


def cmd_lb_score(competition: Competition, args) -> int:
    """Record the public score of a submission this repository wrote (see :mod:`common.ledger`)."""
    from common.ledger import Ledger

    ledger = Ledger(args.submissions_dir, competition.name)
    row = ledger.record_score(args.sub, args.score, args.board)
    cv_text = "no CV" if not row["cv"] else f"CV {float(row['cv']):.5f}"
    gap = f", LB - CV {args.score - float(row['cv']):+.5f}" if row["cv"] else ""
    _say(
        f"recorded: {row['file']} ({row['kind']} of run {row['run']}, {row['model']}) {cv_text} -> "
        f"board {row['board']} {args.score:.5f}{gap}"
    )
    _say(f"scores: {ledger.scores_path}")
    return 0


def add_pseudo_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    p.add_argument("--run-dir", required=True, help="a complete run whose fold models predicted the test set")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.95,
        help="keep test rows whose label has at least this probability (default 0.95; street: the whole string's)",
    )
    p.add_argument("--out", help="the new run directory (default <run-dir>-pseudo)")
    p.add_argument("--data-dir", help="contest files (default: the run's)")
    p.add_argument("--force", action="store_true", help="retrain complete folds, or a folder made otherwise")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument(
        "--submissions-dir", default="submissions", help="archive of submissions (default submissions)"
    )


def cmd_pseudo(competition: Competition, args) -> int:
    from common import pseudo

    return pseudo.pseudo_cli(competition, args)


def add_dashboard_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    from common import dashboard

    dashboard.add_arguments(p)


def cmd_dashboard(competition: Competition, args) -> int:
    from common import dashboard

    dashboard.serve(args.storage, args.port)
    return 0


def add_models_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    p.add_argument("--params", action="store_true", help="also print each model's config keys and defaults")


def cmd_models(competition: Competition, args) -> int:
    from common.config import leaves

    competition.import_models()
    if args.params:
        print("data (every model):")
        for path, _ in leaves({"data": competition.data_config}).items():
            print(f"    {path[-1]} = {getattr(competition.data_config(), path[-1])!r}")
    for name in list_models(module=namespace(competition.models_module)):
        print(name)
        if args.params:
            config = get_model_entry(name, competition.models_module).config_cls()
            for path in leaves({"model": type(config)}):
                value = config
                for part in path[1:]:
                    value = getattr(value, part)
                where = "trainer." if len(path) > 2 else ""
                print(f"    {where}{path[-1]} = {value!r}")
    return 0


def add_adversarial_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    from common import adversarial

    adversarial.add_arguments(p, competition)


def cmd_adversarial(competition: Competition, args) -> int:
    from common import adversarial

    return adversarial.cmd(competition, args)


SHARED: dict[str, tuple[str, Callable, Callable]] = {
    "train": (
        "train one fold or all folds of a model and write OOF, CV score and submission",
        add_train_arguments,
        cmd_train,
    ),
    "predict": ("write a submission from a trained run's fold models", add_predict_arguments, cmd_predict),
    "tune": ("Optuna study over a model's search space on the shared folds", add_tune_arguments, cmd_tune),
    "dashboard": (
        "optuna-dashboard over the tuning storage on http://127.0.0.1:PORT (every study, not only this contest's)",
        add_dashboard_arguments,
        cmd_dashboard,
    ),
    "blend": ("blend runs' OOF probabilities with weights fitted on OOF", add_blend_arguments, cmd_blend),
    "models": (
        "list this contest's registered models (--params: their config keys)",
        add_models_arguments,
        cmd_models,
    ),
    "leaderboard": (
        "table of every run of this contest by CV score",
        add_leaderboard_arguments,
        cmd_leaderboard,
    ),
    "pseudo": (
        "train a run again with its confident test predictions as extra training rows (same folds)",
        add_pseudo_arguments,
        cmd_pseudo,
    ),
    "lb-score": (
        "record the public leaderboard score a submission file got (in submissions/<comp>/scores.csv)",
        add_lb_score_arguments,
        cmd_lb_score,
    ),
    "adversarial": (
        "adversarial validation: AUC of telling training from test rows, the separating features, each training "
        "row's test-likeness (runs/<comp>/adversarial/)",
        add_adversarial_arguments,
        cmd_adversarial,
    ),
}


def build_parser(
    competition: Competition, extra_verbs: dict[str, Verb] | None = None
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m competitions.{competition.name}", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, (help_text, add_args, run) in SHARED.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p, competition)
        p.set_defaults(handler=lambda a, run=run: run(competition, a))
    for name, verb in (extra_verbs or {}).items():
        p = sub.add_parser(name, help=verb.help, description=verb.help)
        verb.add_arguments(p)
        p.set_defaults(handler=verb.run)
    return parser


def run_main(handler: Callable[[], int | None]) -> int:
    """Run a command: a :class:`UserError` or filesystem error is one line on stderr and exit code 2."""
    try:
        code = handler()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except (
        OSError
    ) as exc:  # a read-only folder, a path that is a file, a full disk: the environment, not a bug
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def main(
    competition: Competition, argv: Sequence[str] | None = None, extra_verbs: dict[str, Verb] | None = None
) -> int:
    parser = build_parser(competition, extra_verbs)
    args = parser.parse_args(argv)
    return run_main(lambda: args.handler(args))

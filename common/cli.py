"""The command line every contest shares: ``train``, ``predict``, ``tune``, ``blend``, ``leaderboard``, plus the
contest's own verbs (``synth``, ``pretrain``...). ``competitions/<name>/cli.py`` calls :func:`main` with its
:class:`~common.competition.Competition`.

Bad input raises :class:`~common.errors.UserError`: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from common import cv, distributed
from common.atomic import atomic_path, write_text
from common.competition import Competition, TrainData
from common.config import resolve, to_dict
from common.errors import UserError
from common.folds import data_fingerprint, get_folds
from common.registry import get_model_entry, list_models
from common.submission import archive_name, write_frame, write_submission


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
    known = list_models(module=competition.models_module)
    if name not in known:
        raise UserError(f"unknown model {name!r} for {competition.name}; known models: {', '.join(known)}")


def model_params(name: str, config_file: str | None, overrides: Sequence[str] | None, args) -> dict:
    entry = get_model_entry(name)
    if entry.config_cls is None:
        return {}
    config = resolve(entry.config_cls, config_file, overrides)
    fields = {f.name for f in dataclasses.fields(config)}
    given = {item.partition("=")[0].strip() for item in overrides or []}
    if getattr(args, "quiet", False) and "quiet" in fields:
        config.quiet = True
    if getattr(args, "seed", None) is not None and "seed" in fields and "seed" not in given:
        config.seed = args.seed
    return to_dict(config)


def resolve_folds(data: TrainData, folds_dir: Path, n_folds: int, seed: int) -> tuple[np.ndarray, Path]:
    """The shared fold column: the contest's predefined split, or stratified k-fold saved once and reused."""
    if data.folds is None:
        return get_folds(folds_dir, data.ids, data.strata, n_folds, seed)
    path = folds_dir / f"folds-predefined-{data_fingerprint(data.ids, data.folds)}.csv"
    if not path.exists():
        import pandas as pd

        frame = pd.DataFrame(
            {"id": np.asarray(data.ids).astype(str), "label": data.strata, "fold": data.folds}
        )
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    return np.asarray(data.folds, dtype=np.int64), path


def read_run_config(run_dir: Path) -> dict | None:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def check_run_dir(run_dir: Path, config: dict, force: bool) -> bool:
    """A run directory belongs to one competition, model, folds and params; refuse to mix them.

    Returns True when it holds artefacts of another folds file or other params and ``force`` was given: the caller
    then clears them all (:func:`clear_run_artefacts`), so no CV score or submission mixes two configurations."""
    old = read_run_config(run_dir)
    if old is None:
        return False
    for key in ("competition", "model"):
        if old.get(key) != config[key]:
            raise UserError(
                f"{run_dir} holds a run of {key} {old.get(key)!r}, not {config[key]!r}; choose another --run-dir"
            )
    changed = sorted(k for k in ("folds_file", "params") if old.get(k) != config.get(k))
    # complete folds or refits, or crashed ones whose resume checkpoint (last.pt) was trained with the old params
    has_work = any(
        any(run_dir.glob(f"{d}/{f}")) for d in ("fold*", "full") for f in ("metrics.json", "last.pt")
    )
    if not (changed and has_work):
        return False
    if force:
        return True
    detail = ""
    if "params" in changed:
        diff = {
            k: (old["params"].get(k), v) for k, v in config["params"].items() if old["params"].get(k) != v
        }
        detail = f" (params old -> new: {diff})"
    raise UserError(
        f"{run_dir} has folds trained with other {' and '.join(changed)}{detail}; "
        "pass --force to retrain them or choose another --run-dir"
    )


def clear_run_artefacts(run_dir: Path) -> None:
    """Remove every fold, refit and merged artefact of a run directory (its config.yaml is rewritten next)."""
    import shutil

    for d in [*run_dir.glob("fold*"), run_dir / "full"]:
        if d.is_dir():
            shutil.rmtree(d)
    for name in ("cv.json", "oof.npy", "oof_ids.npy", "test.npy", "submission.csv", "submission-full.csv"):
        (run_dir / name).unlink(missing_ok=True)


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
    p.add_argument("--config", help="YAML file of model params (e.g. the best params from tune)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a model param")
    p.add_argument("--force", action="store_true", help="retrain folds that are already complete")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--folds-dir", help=f"where fold files live (default runs/{competition.name}/folds)")
    p.add_argument(
        "--submissions-dir", default="submissions", help="archive of submissions (default submissions)"
    )


def cmd_train(competition: Competition, args) -> int:
    check_model(competition, args.model)
    params = model_params(args.model, args.config, args.set, args)
    competition.configure(params)
    data_dir = data_dir_of(competition, args)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / competition.name / args.model
    folds_dir = Path(args.folds_dir) if args.folds_dir else Path("runs") / competition.name / "folds"
    data = competition.load_train(data_dir)
    test = competition.load_test(data_dir)
    folds, folds_file = resolve_folds(data, folds_dir, args.folds, args.seed)
    config = {
        "competition": competition.name,
        "model": args.model,
        "n_folds": len(cv.fold_numbers(folds)),
        "seed": args.seed,
        "folds_file": str(folds_file),
        "data_dir": str(data_dir),
        "params": params,
        "classes": cv.class_list(data.y),
    }
    if args.fold in ("all", "full"):
        which = cv.fold_numbers(folds)
    else:
        try:
            which = [int(args.fold)]
        except ValueError:
            raise UserError(f"--fold expects a fold number, 'all' or 'full', got {args.fold!r}") from None
        if which[0] not in cv.fold_numbers(folds):
            raise UserError(f"--fold {which[0]} does not exist; folds are {cv.fold_numbers(folds)}")
    stale = check_run_dir(run_dir, config, args.force)
    if distributed.is_main_process():
        if stale:
            _say(f"{run_dir}: config changed and --force given: removing its old folds and outputs")
            clear_run_artefacts(run_dir)
        write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    from common.registry import create_model

    model = create_model(args.model, **params)
    if args.fold == "full":
        return train_full(competition, model, data, test, run_dir, args)
    results = cv.run_folds(
        model,
        data,
        folds,
        run_dir,
        competition.score,
        which,
        test,
        metric_name=competition.metric_name,
        force=args.force,
        on_fold_end=lambda k, m: _say(
            f"fold {k}: {competition.metric_name} {m['score']:.5f} "
            + (
                "(already complete, skipped; --force retrains)"
                if m.get("skipped")
                else f"({m['seconds']:.1f}s)"
            )
        ),
    )
    if cv.missing_folds(run_dir, folds):
        _say(f"fold {results[-1]['fold']} {competition.metric_name}: {results[-1]['score']:.5f}")
        return 0
    if not distributed.is_main_process():
        return 0
    summary = cv.merge(run_dir, data, folds, competition.score, competition.metric_name)
    if summary["test_proba"] is not None and test is not None:
        write_submission(competition, test, summary["test_proba"], run_dir / "submission.csv", overwrite=True)
        archive = archive_name(competition.name, args.model, summary["score"], args.submissions_dir)
        write_submission(competition, test, summary["test_proba"], archive)
        _say(f"submission: {run_dir / 'submission.csv'} (archived as {archive})")
    scores = ", ".join(f"{s:.5f}" for s in summary["fold_scores"])
    _say(f"folds: {scores}")
    _say(f"CV {competition.metric_name}: {summary['score']:.5f}")
    return 0


def train_full(competition: Competition, model, data: TrainData, test, run_dir: Path, args) -> int:
    if test is None:
        raise UserError(
            "--fold full only predicts the test set, and no test file was found in the data directory"
        )
    result = cv.run_full(model, data, run_dir, test, force=args.force)
    if result.get("skipped"):
        _say(f"{run_dir / 'full'} is already complete, skipped; --force retrains")
        return 0
    if distributed.is_main_process():
        path = write_submission(
            competition, test, result["test_proba"], run_dir / "submission-full.csv", overwrite=True
        )
        _say(f"full refit on {result['n_train']} rows in {result['seconds']:.1f}s; submission: {path}")
    return 0


def add_predict_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    p.add_argument("--run-dir", required=True, help="a run directory made by train")
    p.add_argument("--data-dir", help=f"contest files (default data/{competition.name})")
    p.add_argument("--test-file", help="which test file to predict (contest-specific default)")
    p.add_argument("--out", required=True, help="the submission CSV to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def cmd_predict(competition: Competition, args) -> int:
    import joblib

    run_dir = Path(args.run_dir)
    config = read_run_config(run_dir)
    if config is None:
        raise UserError(f"{run_dir} is not a run directory (no config.yaml); train first")
    if config.get("competition") != competition.name:
        raise UserError(f"{run_dir} is a run of {config.get('competition')!r}, not {competition.name!r}")
    competition.import_models()
    n_folds = int(config.get("n_folds", 0))
    models = [run_dir / f"fold{k}" / "model.pkl" for k in range(n_folds)]
    complete = [m for m in models if m.is_file() and (m.parent / "metrics.json").is_file()]
    if not complete:
        raise UserError(f"{run_dir} has no complete fold with a saved model")
    test = competition.load_test(data_dir_of(competition, args), args.test_file)
    if test is None:
        raise UserError(f"no test file found in {args.data_dir or competition.default_data_dir()}")
    classes = config.get("classes")
    parts = []
    for path in complete:
        model = joblib.load(path)
        parts.append(
            cv.align_columns(model, np.asarray(model.predict_proba(test.X), dtype=np.float32), classes)
        )
    proba = np.mean(parts, axis=0)
    write_frame(competition, test, competition.submission_frame(test, proba), args.out, overwrite=args.force)
    _say(f"wrote {args.out} from {len(complete)} fold model(s)")
    return 0


def add_tune_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    p.add_argument("--model", required=True, help="a registered model name")
    p.add_argument("--data-dir", help=f"contest files (default data/{competition.name})")
    p.add_argument("--trials", type=int, default=20, help="trials this worker runs (default 20)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///runs/optuna.db)")
    p.add_argument("--study-name", help="default <competition>-<model>")
    p.add_argument("--folds", type=int, default=5, help="number of folds of the shared split (default 5)")
    p.add_argument("--folds-used", type=int, default=None, help="score trials on the first K folds only")
    p.add_argument("--seed", type=int, default=42, help="seed of the folds and the sampler")
    p.add_argument("--config", help="YAML of fixed model params under the searched ones")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fix a model param")
    p.add_argument("--timeout", type=float, default=None, help="stop this worker after this many seconds")
    p.add_argument("--out", help="best params YAML (default runs/<comp>/tune/<study>/best.yaml)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--folds-dir", help=f"where fold files live (default runs/{competition.name}/folds)")


def cmd_tune(competition: Competition, args) -> int:
    from common import tuning

    check_model(competition, args.model)
    base = model_params(args.model, args.config, args.set, args)
    competition.configure(base)
    data_dir = data_dir_of(competition, args)
    folds_dir = Path(args.folds_dir) if args.folds_dir else Path("runs") / competition.name / "folds"
    data = competition.load_train(data_dir)
    folds, _ = resolve_folds(data, folds_dir, args.folds, args.seed)
    result = tuning.tune(
        competition,
        args.model,
        data,
        folds,
        base_params=base,
        n_trials=args.trials,
        storage=args.storage,
        study_name=args.study_name,
        folds_used=args.folds_used,
        seed=args.seed,
        timeout=args.timeout,
        out=args.out,
    )
    _say(f"best params: {result['best_params_path']}")
    _say(f"best {competition.metric_name}: {result['best_value']:.5f}")
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


def cmd_leaderboard(competition: Competition, args) -> int:
    from common import leaderboard

    leaderboard.leaderboard_cli(Path(args.runs_root), competition.name, args.out)
    return 0


def add_models_arguments(p: argparse.ArgumentParser, competition: Competition) -> None:
    p.add_argument("--params", action="store_true", help="also print each model's config keys and defaults")


def cmd_models(competition: Competition, args) -> int:
    from common.registry import default_config

    competition.import_models()
    for name in list_models(module=competition.models_module):
        print(name)
        if args.params:
            for key, value in default_config(name).items():
                print(f"    {key} = {value!r}")
    return 0


SHARED: dict[str, tuple[str, Callable, Callable]] = {
    "train": (
        "train one fold or all folds of a model and write OOF, CV score and submission",
        add_train_arguments,
        cmd_train,
    ),
    "predict": ("write a submission from a trained run's fold models", add_predict_arguments, cmd_predict),
    "tune": ("Optuna study over a model's search space on the shared folds", add_tune_arguments, cmd_tune),
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


def main(
    competition: Competition, argv: Sequence[str] | None = None, extra_verbs: dict[str, Verb] | None = None
) -> int:
    parser = build_parser(competition, extra_verbs)
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)

"""The run store: the one module that reads and writes a run folder.

Layout of ``runs/<competition>/<run>/`` (schema :data:`SCHEMA`)::

    config.yaml         what was trained: competition, model, data section, model params (nested trainer), folds
    run.json            provenance: schema, command line, git commit and dirty flag, package versions, device,
                        seeds, content fingerprints of every input file/folder, the folds file, seconds per fold
    fold<k>/            estimator.json + model.safetensors + fitted.safetensors (deep) or model.skops (sklearn),
                        oof.npy, oof_ids.npy, test.npy, log.jsonl, last.pt/best.pt while training, metrics.json last
    full/               the same for the refit on every labelled row (``--fold full``)
    oof.npy, oof_ids.npy, test.npy, cv.json, submission.csv, submission-full.csv     after all folds
    .run.lock, .fold<k>.lock                                                            held while writing / training
    .repredict.lock                                        held while a process re-predicts the test set

and of ``runs/<competition>/adversarial/`` (:class:`AdversarialStore`, written by :mod:`common.adversarial`)::

    scores.csv          id, set (train | test), fold, score: each row's out-of-fold probability of being a test row
    report.json         AUC and its fold spread, the separating features, the most test-like training rows, the
                        content fingerprints of the data it was made from; written last (the completion marker)

Everything is written atomically (:mod:`common.atomic`); nothing here is ever unpickled (:mod:`common.persist`,
``np.load(allow_pickle=False)``, ``yaml.safe_load``, JSON). A folder of an older layout is refused with a message to
re-run it. cv, blend, predict, the leaderboard and the notebook go through this module only.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import shutil
import subprocess
import sys
import time
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from common import persist
from common.atomic import write_json, write_npy, write_text
from common.config import dump_yaml
from common.errors import UserError
from common.locks import Lock, is_held

SCHEMA = 2
CONFIG, MANIFEST, CV = "config.yaml", "run.json", "cv.json"
OOF, OOF_IDS, TEST = "oof.npy", "oof_ids.npy", "test.npy"
SUBMISSION, SUBMISSION_FULL = "submission.csv", "submission-full.csv"
METRICS, LOG, RESUME, BEST = "metrics.json", "log.jsonl", "last.pt", "best.pt"
RUN_LOCK, REPREDICT_LOCK = ".run.lock", ".repredict.lock"
FULL = "full"
REPO_ROOT = Path(__file__).resolve().parents[1]
VERSIONED = ("torch", "numpy", "scikit-learn", "timm", "transformers", "optuna", "albumentations")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


#: the JSON types of a number
_NUMBER = (int, float)
_NONE = type(None)
#: ``key: (types, what it should be, required)`` of the fields that readers of a run file rely on
_SCORE = (_NUMBER, "a number", True)
_METRICS_FIELDS = {
    "metric": ((str, _NONE), "a metric name", False),
    "seconds": (_NUMBER, "a number of seconds", False),
}
_CV_FIELDS = {
    "score": _SCORE,
    "metric": ((str, _NONE), "a metric name", False),
    "fold_scores": ((list, _NONE), "a list of scores", False),
    "n_folds": ((int, _NONE), "a number of folds", False),
    "seconds": ((*_NUMBER, _NONE), "a number of seconds", False),
    "weights": ((dict, _NONE), "an object of member weights", False),
    "folds_file": ((str, _NONE), "a path", False),
}
_MANIFEST_FIELDS = {
    "inputs": (dict, "an object of input fingerprints", False),
    "git": ((dict, _NONE), "an object", False),
    "folds": (dict, "an object of folds", False),
}


def _check(path: Path, key: str, value, types, what: str) -> None:
    """A one-line :class:`UserError` naming ``path`` unless ``value`` is of ``types`` (a bool never is: to Python it
    is an int, but it is no score or count)."""
    if isinstance(value, bool) or not isinstance(value, types):
        raise UserError(
            f"{path}: expected {what} as {key!r}, got {json.dumps(value)[:60]}; the run folder is damaged"
        )


def _check_fields(path: Path, record: dict, fields: dict) -> None:
    for key, (types, what, required) in fields.items():
        if key not in record:
            if required:
                raise UserError(f"{path}: expected {what} as {key!r}, found none; the run folder is damaged")
            continue
        _check(path, key, record[key], types, what)


class RunStore:
    """One run folder (see the module docstring). Reading never writes; writers hold the folder's locks."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------ layout
    def fold_dir(self, fold: int | str) -> Path:
        return self.path / (FULL if fold == FULL else f"fold{int(fold)}")

    def fold_numbers_on_disk(self) -> list[int]:
        return sorted(int(p.name[4:]) for p in self.path.glob("fold*") if p.is_dir() and p.name[4:].isdigit())

    # ------------------------------------------------------------------ reading
    def _read(self, name: str | Path, kind: str):
        path = self.path / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (IsADirectoryError, NotADirectoryError, PermissionError) as exc:
            raise UserError(f"{path}: cannot be read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text; the run folder is damaged") from None
        try:
            return yaml.safe_load(text) if kind == "yaml" else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            first = str(exc).splitlines()[0]
            raise UserError(
                f"{path}: not valid {kind.upper()} ({first}); the run folder is damaged"
            ) from None

    def has_config(self) -> bool:
        return (self.path / CONFIG).is_file()

    def read_config(self) -> dict | None:
        config = self._read(CONFIG, "yaml")
        if config is not None and not isinstance(config, dict):
            raise UserError(f"{self.path / CONFIG}: expected a mapping, got {type(config).__name__}")
        return config

    def _read_record(self, name: str | Path, fields: dict) -> tuple[Path, dict | None]:
        """A JSON object of the run folder (None when absent) whose ``fields`` are checked, and its path."""
        path, record = self.path / name, self._read(name, "json")
        if record is not None:
            if not isinstance(record, dict):
                raise UserError(f"{path}: expected a JSON object, got {type(record).__name__}")
            _check_fields(path, record, fields)
        return path, record

    def read_manifest(self) -> dict | None:
        path, manifest = self._read_record(MANIFEST, _MANIFEST_FIELDS)
        if manifest is None:
            return None
        _check(path, "git.commit", (manifest.get("git") or {}).get("commit"), (str, _NONE), "a commit hash")
        for kind, recorded in manifest.get("inputs", {}).items():
            _check(path, f"inputs.{kind}", recorded, (dict, type(None)), "an object of fingerprints")
            for name, entry in (recorded or {}).items():
                _check(path, f"inputs.{kind}[{name!r}]", entry, dict, "a fingerprint object")
        return manifest

    def layout_problem(self) -> str | None:
        """Why this folder cannot be used as a run of this version (None when it can, or holds no run yet)."""
        if not self.has_config():
            return None
        manifest = self.read_manifest()
        if manifest is None:
            return f"{self.path} was written by an older version of this repository (it has no {MANIFEST})"
        if manifest.get("schema") != SCHEMA:
            return f"{self.path / MANIFEST} has schema {manifest.get('schema')!r}; this version reads schema {SCHEMA}"
        return None

    def check_layout(self) -> None:
        problem = self.layout_problem()
        if problem:
            raise UserError(f"{problem}; re-run it into a new --run-dir (or pass --force to retrain it here)")

    def read_fold_metrics(self, fold: int | str) -> dict | None:
        # the refit on all rows (``full/``) has no score
        fields = _METRICS_FIELDS if fold == FULL else {**_METRICS_FIELDS, "score": _SCORE}
        return self._read_record(self.fold_dir(fold).relative_to(self.path) / METRICS, fields)[1]

    def is_complete(self, fold: int | str) -> bool:
        return (self.fold_dir(fold) / METRICS).is_file()

    def has_work(self) -> bool:
        """Any complete fold or refit, or a crashed one's resume checkpoint."""
        return any(any(self.path.glob(f"{d}/{f}")) for d in ("fold*", FULL) for f in (METRICS, RESUME))

    def read_array(self, name: str | Path) -> np.ndarray:
        path = self.path / name
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise UserError(f"{path}: missing; the run is not merged (train all its folds first)") from None
        except (ValueError, OSError, EOFError) as exc:
            raise UserError(f"{path}: not a plain numpy array file ({str(exc)[:200]})") from None

    def read_cv(self) -> dict | None:
        path, cv = self._read_record(CV, _CV_FIELDS)
        if cv is None:
            return None
        for i, score in enumerate(cv.get("fold_scores") or []):
            _check(path, f"fold_scores[{i}]", score, _NUMBER, "a number")
        for name, weight in (cv.get("weights") or {}).items():
            _check(path, f"weights[{name!r}]", weight, _NUMBER, "a number")
        return cv

    def load_model(self, fold: int | str):
        return persist.load(self.fold_dir(fold))

    # ------------------------------------------------------------------ writing
    def prepare(self) -> None:
        """Create the folder or say in one line why it cannot be used."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--run-dir {self.path} is a file, not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--run-dir {self.path}: cannot create it ({exc.strerror})") from None
        probe = self.path / f".write-test-{id(self)}"
        try:
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise UserError(f"--run-dir {self.path}: cannot write in it ({exc.strerror})") from None

    def run_lock(self, what: str, timeout: float = 300.0) -> Lock:
        """The short lock around run-level files (config, manifest, merged outputs)."""
        return Lock(self.path / RUN_LOCK, f"{what} ({self.path})", timeout=timeout)

    def repredict_lock(self) -> Lock:
        """Held while a process re-predicts the run's test set, so re-predictions of one run take turns."""
        return Lock(self.path / REPREDICT_LOCK, f"re-predict the test set of {self.path}")

    def fold_lock(self, fold: int | str, doing: str = "train") -> Lock:
        """Held while a fold (or the refit) trains, or while its model re-predicts the test set (``doing`` says
        which, for the message of whoever finds it taken); taken without waiting."""
        return Lock(self.path / f".fold{fold}.lock", f"{doing} fold {fold} of {self.path}", timeout=0.0)

    def folds_in_use(self) -> dict[str, str]:
        """``fold -> holder`` of every fold some process trains right now."""
        out = {}
        for path in self.path.glob(".fold*.lock"):
            fold = path.name[len(".fold") : -len(".lock")]
            holder = self.fold_in_use(fold)
            if holder is not None:
                out[fold] = holder
        return out

    def fold_in_use(self, fold: int | str) -> str | None:
        """Who trains ``fold`` right now (None: nobody). Probing writes nothing where no lock file exists."""
        lock = self.fold_lock(fold)
        return lock.holder() if lock.path.exists() and is_held(lock.path) else None

    def write_config(self, config: dict) -> None:
        write_text(self.path / CONFIG, dump_yaml(config))

    def write_manifest(self, manifest: dict) -> None:
        write_json(self.path / MANIFEST, {**manifest, "schema": SCHEMA, "updated": _now()})

    def update_manifest(self, **changes) -> dict:
        """Read-modify-write of ``run.json`` (the caller holds the run lock); nested ``folds`` entries merge."""
        manifest = self.read_manifest() or {}
        folds = {**manifest.get("folds", {}), **changes.pop("folds", {})}
        manifest.update(changes, folds=folds)
        self.write_manifest(manifest)
        return manifest

    def start_fold(self, fold: int | str, force: bool) -> None:
        """Before training a fold: remove its completion marker (and, with ``force``, its resume state)."""
        out = self.fold_dir(fold)
        out.mkdir(parents=True, exist_ok=True)
        names = (METRICS, RESUME, BEST, LOG) if force else (METRICS,)
        for name in names:
            (out / name).unlink(missing_ok=True)

    def save_fold(self, fold: int | str, estimator, arrays: dict[str, np.ndarray], metrics: dict) -> None:
        """The fold's model and arrays, then ``metrics.json`` last: the completion marker."""
        out = self.fold_dir(fold)
        if estimator is not None:
            persist.save(estimator, out)
        for name, array in arrays.items():
            write_npy(out / name, array)
        write_json(out / METRICS, metrics)
        (out / RESUME).unlink(missing_ok=True)  # resume state is moot once the fold is complete

    def write_fold_test(self, fold: int | str, proba: np.ndarray) -> None:
        write_npy(self.fold_dir(fold) / TEST, proba)

    def clear_all(self) -> None:
        """Remove every fold, refit and merged artefact (config and manifest are rewritten next)."""
        for d in [*self.path.glob("fold*"), self.path / FULL]:
            if d.is_dir():
                shutil.rmtree(d)
        self.clear_outputs()
        for name in (SUBMISSION_FULL, CONFIG, MANIFEST):
            (self.path / name).unlink(missing_ok=True)

    def clear_outputs(self) -> None:
        for name in (CV, OOF, OOF_IDS, TEST, SUBMISSION):
            (self.path / name).unlink(missing_ok=True)

    def write_merged(
        self, oof: np.ndarray, oof_ids: np.ndarray, test: np.ndarray | None, summary: dict
    ) -> None:
        """The assembled OOF, averaged test probabilities and ``cv.json`` (written last: the run is complete)."""
        (self.path / CV).unlink(missing_ok=True)
        write_npy(self.path / OOF, oof)
        write_npy(self.path / OOF_IDS, np.asarray(oof_ids).astype(str))
        if test is not None:
            write_npy(self.path / TEST, test)
        else:
            (self.path / TEST).unlink(missing_ok=True)
        write_json(self.path / CV, summary)

    def submission_origin(self, root, competition: str, kind: str | None = None):
        """What the submission ledger records about a submission of this run (:class:`common.ledger.Origin`):
        kind (``train``, ``blend``, ``full``, ``predict``), run, model and its merged CV score when it has one."""
        from common.ledger import Origin

        config = self.read_config() or {}
        cv = self.read_cv() or {}
        model = str(config.get("model", "model"))
        kind = kind or ("blend" if model == "blend" else "train")
        return Origin(root, competition, kind, str(self.path), model, cv.get("score"), cv.get("metric"))

    def write_submission(
        self, competition, test, proba, *, full: bool = False, archive_root=None, ledger_root=None
    ) -> tuple[Path, Path | None]:
        """``submission.csv`` (or ``submission-full.csv``), checked; also archived under ``archive_root``. Each
        file written is recorded in the submission ledger under ``ledger_root`` (default ``archive_root``; none
        when both are None)."""
        from common.submission import archive_name, write_submission

        ledger_root = archive_root if ledger_root is None else ledger_root
        origin = None
        if ledger_root is not None:
            origin = self.submission_origin(ledger_root, competition.name, "full" if full else None)
        own = write_submission(
            competition,
            test,
            proba,
            self.path / (SUBMISSION_FULL if full else SUBMISSION),
            overwrite=True,
            origin=origin,
        )
        archived = None
        if archive_root is not None:
            config = self.read_config() or {}
            cv = self.read_cv() or {}
            model = str(config.get("model", "model")) + ("-pseudo" if config.get("pseudo") else "")
            score = cv.get("score", math.nan) if not full else math.nan
            archived = write_submission(
                competition,
                test,
                proba,
                archive_name(competition.name, model + ("-full" if full else ""), score, archive_root),
                origin=origin,
            )
        return own, archived

    def fold_test(self, fold: int | str) -> np.ndarray | None:
        """The test probabilities of one fold's model (``fold<k>/test.npy``), or None when it has none."""
        path = self.fold_dir(fold) / TEST
        return self.read_array(path.relative_to(self.path)) if path.is_file() else None


class AdversarialStore:
    """The folder of an adversarial validation (see the module docstring): no config.yaml, so it is never taken for a
    run. ``report.json`` is removed first and written last, so a crash never leaves a complete-looking folder."""

    REPORT, SCORES = "report.json", "scores.csv"
    SCORE_COLUMNS = ("id", "set", "fold", "score")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def write(self, scores: pd.DataFrame, report: dict) -> None:
        if list(scores.columns) != list(self.SCORE_COLUMNS):
            raise ValueError(f"scores must have columns {self.SCORE_COLUMNS}, got {list(scores.columns)}")
        RunStore(self.path).prepare()
        (self.path / self.REPORT).unlink(missing_ok=True)
        write_text(self.path / self.SCORES, scores.to_csv(index=False, float_format="%.6f"))
        write_json(self.path / self.REPORT, report)

    def read_report(self) -> dict | None:
        """The report, or None when the folder holds no complete adversarial validation."""
        report = RunStore(self.path)._read(self.REPORT, "json")
        if report is not None and (not isinstance(report, dict) or "auc" not in report):
            raise UserError(f"{self.path / self.REPORT}: not an adversarial validation report")
        return report

    def read_scores(self) -> pd.DataFrame:
        path = self.path / self.SCORES
        try:
            frame = pd.read_csv(path, dtype={"id": str, "set": str})
        except FileNotFoundError:
            raise UserError(f"{path}: missing; re-run the adversarial validation") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
            raise UserError(f"{path}: not a readable scores CSV ({str(exc)[:200]})") from None
        if list(frame.columns) != list(self.SCORE_COLUMNS) or not pd.api.types.is_numeric_dtype(
            frame["score"]
        ):
            raise UserError(f"{path}: expected columns {','.join(self.SCORE_COLUMNS)} with numeric scores")
        return frame


class Run(RunStore):
    """A run folder read for comparison (leaderboard, blend, notebook): its config, scores and arrays, lazily."""

    def __init__(self, path: str | Path, config: dict | None = None) -> None:
        super().__init__(path)
        self._config = config

    @cached_property
    def config(self) -> dict:
        return self._config if self._config is not None else (self.read_config() or {})

    @cached_property
    def manifest(self) -> dict:
        return self.read_manifest() or {}

    @property
    def competition(self) -> str:
        return str(self.config.get("competition") or self.path.parent.name)

    @property
    def model(self) -> str:
        return str(self.config.get("model") or "?")

    @property
    def params(self) -> dict:
        """The model's params as flat ``key: value`` (the nested trainer's keys too)."""
        return flat_params(self.config.get("params") or {})

    @property
    def data_params(self) -> dict:
        return dict(self.config.get("data") or {})

    @property
    def is_blend(self) -> bool:
        return self.model == "blend"

    @property
    def pseudo(self) -> dict | None:
        """``{from, threshold, rows, ...}`` of a run trained with pseudo-labelled test rows (:mod:`common.pseudo`)."""
        pseudo = self.config.get("pseudo")
        return pseudo if isinstance(pseudo, dict) else None

    @cached_property
    def cv(self) -> dict | None:
        return self.read_cv()

    @cached_property
    def fold_metrics(self) -> dict[int, dict]:
        out = {}
        for k in self.fold_numbers_on_disk():
            metrics = self.read_fold_metrics(k)
            if metrics is not None:
                out[k] = metrics
        return out

    @property
    def n_folds(self) -> int:
        if self.config.get("n_folds") is not None:
            return int(self.config["n_folds"])
        return int((self.cv or {}).get("n_folds") or len(self.fold_metrics))

    @property
    def complete(self) -> bool:
        if self.cv is None:
            return False
        return self.is_blend or len(self.fold_metrics) >= self.n_folds

    @property
    def metric(self) -> str | None:
        if self.cv is not None:
            return self.cv.get("metric")
        first = next(iter(self.fold_metrics.values()), None)
        return first.get("metric") if first else None

    @property
    def greater_is_better(self) -> bool:
        from common.metrics import METRICS

        metric = METRICS.get(self.metric or "")
        return True if metric is None else metric.greater_is_better

    @property
    def score(self) -> float:
        """The CV score of a complete run; NaN otherwise (an incomplete run is never averaged)."""
        return float(self.cv["score"]) if self.complete else math.nan

    @property
    def fold_scores(self) -> list[float]:
        if self.complete and self.cv.get("fold_scores") is not None:
            return [float(s) for s in self.cv["fold_scores"]]
        return [float(m["score"]) for m in self.fold_metrics.values()]

    @property
    def seconds(self) -> float:
        if self.cv is not None and self.cv.get("seconds") is not None:
            return float(self.cv["seconds"])
        return float(sum(m.get("seconds", 0.0) for m in self.fold_metrics.values()))

    @property
    def folds_file(self) -> str | None:
        return self.config.get("folds_file") or (self.cv or {}).get("folds_file")

    @property
    def data_dir(self) -> str | None:
        return self.config.get("data_dir")

    @property
    def commit(self) -> str:
        git = self.manifest.get("git") or {}
        commit = (git.get("commit") or "")[:8]
        return commit + ("+dirty" if git.get("dirty") else "") if commit else ""

    def data_changed(self) -> list[str]:
        """Recorded training inputs whose content differs now (or that are gone); empty when they match or when
        nothing was recorded."""
        from common.fingerprint import changed, fingerprints

        recorded = (self.manifest.get("inputs") or {}).get("train") or {}
        if not recorded:
            return []
        return changed(recorded, fingerprints(recorded))

    def oof(self) -> tuple[np.ndarray, np.ndarray]:
        """Merged OOF probabilities and their ids (data order)."""
        return self.read_array(OOF), self.read_array(OOF_IDS).astype(str)

    def test(self) -> np.ndarray | None:
        return self.read_array(TEST) if (self.path / TEST).is_file() else None

    def fold_oof_ids(self, fold: int) -> np.ndarray | None:
        path = self.fold_dir(fold) / OOF_IDS
        return self.read_array(path.relative_to(self.path)).astype(str) if path.is_file() else None

    def learning_curves(self) -> pd.DataFrame:
        """One row per (fold, epoch) from the trainer's ``fold<k>/log.jsonl`` (the last record of an epoch wins,
        so a resumed fold counts each epoch once); empty for models without epochs."""
        rows = []
        for k in self.fold_numbers_on_disk():
            path = self.fold_dir(k) / LOG
            if not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash
                    if (
                        "epoch" in record and "seconds" in record
                    ):  # epoch records (step records have no seconds)
                        rows.append({"fold": k, **record})
        if not rows:
            return pd.DataFrame(columns=["run", "fold", "epoch"])
        frame = pd.DataFrame(rows).drop_duplicates(["fold", "epoch"], keep="last")
        frame.insert(0, "run", self.name)
        return frame.sort_values(["fold", "epoch"]).reset_index(drop=True)


def flat_params(params: dict) -> dict:
    """A run's (nested) model params as flat ``key: value``: the trainer's keys beside the model's own."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict) and key == "trainer":
            out.update(flat_params(value))
        else:
            out[key] = value
    return out


def open_run(path: str | Path) -> Run:
    """A run folder of this version's layout, or a one-line error saying what it is instead."""
    run = Run(path)
    if not run.has_config():
        raise UserError(f"{run.path} is not a run directory (no {CONFIG})")
    if not isinstance(run.config, dict) or "model" not in run.config:
        raise UserError(f"{run.path / CONFIG}: not a run's config (no model)")
    run.check_layout()
    return run


# ---------------------------------------------------------------------------------------------- provenance
def git_state() -> dict:
    """The repository's commit and whether the working tree differs from it (None outside a git checkout)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_description(device: str) -> str:
    import torch

    from common.distributed import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return f"{resolved} ({torch.cuda.get_device_name(resolved)})"
    return str(resolved)


def command_line() -> str:
    """How this process was started (``python -m competitions.x train ...``), interpreter path shortened."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if argv and Path(argv[0]).name.startswith("python"):
        argv[0] = "python"
    return " ".join(argv)


def new_manifest(seeds: dict, inputs: dict, folds_file: str | None, device: str) -> dict:
    return {
        "schema": SCHEMA,
        "created": _now(),
        "command": command_line(),
        "git": git_state(),
        "versions": versions(),
        "device": device,
        "seeds": seeds,
        "inputs": inputs,
        "folds_file": folds_file,
        "folds": {},
    }


def find_runs(runs_root: str | Path = "runs", competition: str | None = None) -> list[Run | BrokenRun]:
    """Every run under ``runs_root/<competition>/<run>/`` (sorted by path); a folder whose files are damaged or of
    an older layout comes back as a :class:`BrokenRun` with the reason, so one bad run never hides the others."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    pattern = f"{competition}/*/{CONFIG}" if competition else f"*/*/{CONFIG}"
    out: list[Run | BrokenRun] = []
    for config_path in sorted(root.glob(pattern)):
        run = Run(config_path.parent)
        try:
            config = run.config
            if not isinstance(config, dict) or "model" not in config:
                continue  # another kind of config.yaml (e.g. a pretrained BERT's) is not a run
            run.check_layout()
            run.cv, run.fold_metrics  # noqa: B018 - read now, so damage shows here
        except Exception as exc:  # noqa: BLE001 - whatever the damage, the other runs are still listed
            out.append(BrokenRun(config_path.parent, broken_reason(exc)))
            continue
        if competition is None or run.competition == competition:
            out.append(run)
    return out


def broken_reason(exc: BaseException) -> str:
    """Why a run folder cannot be read, in one line: a :class:`UserError`'s own message (it names the file), else
    the exception's kind and first line."""
    if isinstance(exc, UserError):
        return str(exc)
    first = (str(exc).splitlines() or [""])[0][:200]
    return f"cannot be read ({type(exc).__name__}{': ' + first if first else ''})"


class BrokenRun:
    """A run folder that cannot be read, and why."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def competition(self) -> str:
        return self.path.parent.name

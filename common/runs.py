"""Reading run directories back: what ``common/cv.py`` and ``common/blend.py`` wrote under ``runs/<comp>/<run>/``.

A run is a folder holding ``config.yaml``. It is *complete* when its merged ``cv.json`` exists and every fold named
by the config has its ``fold<k>/metrics.json`` (a blend, which has no folds of its own, needs only ``cv.json``).
Nothing here trains or writes; the leaderboard, the blender and the comparison notebook read runs through it.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from common.competition import Competition
from common.errors import UserError
from common.metrics import LOWER_IS_BETTER

REPO_ROOT = Path(__file__).resolve().parents[1]


def locate(path: str | Path) -> Path:
    """``path`` as given when it exists (relative to the working directory), else relative to the repository root
    (so the notebook finds ``runs/`` whether Jupyter starts in the repository or in ``notebooks/``)."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    candidate = REPO_ROOT / path
    return candidate if candidate.exists() else path


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


@dataclass
class Run:
    """One run directory, read lazily."""

    path: Path
    config: dict = field(repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def competition(self) -> str:
        return str(self.config.get("competition") or self.path.parent.name)

    @property
    def model(self) -> str:
        return str(self.config.get("model") or "?")

    @property
    def params(self) -> dict:
        return dict(self.config.get("params") or {})

    @property
    def is_blend(self) -> bool:
        return self.model == "blend"

    @cached_property
    def cv(self) -> dict | None:
        """The merged summary (``cv.json``), ``None`` before the folds were merged."""
        return _read_json(self.path / "cv.json")

    @cached_property
    def fold_metrics(self) -> dict[int, dict]:
        """``fold -> metrics.json`` of every complete fold."""
        out = {}
        for path in self.path.glob("fold*/metrics.json"):
            suffix = path.parent.name[len("fold") :]
            if suffix.isdigit():
                out[int(suffix)] = _read_json(path)
        return dict(sorted(out.items()))

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
        return self.metric not in LOWER_IS_BETTER

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

    def oof(self) -> tuple[np.ndarray, np.ndarray]:
        """Merged OOF probabilities and their ids (data order)."""
        for name in ("oof.npy", "oof_ids.npy"):
            if not (self.path / name).is_file():
                raise UserError(f"{self.path}: no {name}; the run is not merged (train all its folds first)")
        return np.load(self.path / "oof.npy"), np.load(self.path / "oof_ids.npy").astype(str)

    def test(self) -> np.ndarray | None:
        path = self.path / "test.npy"
        return np.load(path) if path.is_file() else None

    def learning_curves(self) -> pd.DataFrame:
        """One row per (fold, epoch) from the trainer's ``fold<k>/log.jsonl`` (the last record of an epoch wins,
        so a resumed fold counts each epoch once); empty for models without epochs."""
        rows = []
        for path in sorted(self.path.glob("fold*/log.jsonl")):
            suffix = path.parent.name[len("fold") :]
            if not suffix.isdigit():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    try:
                        rows.append({"fold": int(suffix), **json.loads(line)})
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash
        if not rows:
            return pd.DataFrame(columns=["run", "fold", "epoch"])
        frame = pd.DataFrame(rows).drop_duplicates(["fold", "epoch"], keep="last")
        frame.insert(0, "run", self.name)
        return frame.sort_values(["fold", "epoch"]).reset_index(drop=True)


def load_run(path: str | Path) -> Run:
    path = Path(path)
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{path} is not a run directory (no config.yaml)")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{config_path}: not valid YAML ({exc})") from None
    if not isinstance(config, dict):
        raise UserError(f"{config_path}: expected a mapping, got {type(config).__name__}")
    return Run(path=path, config=config)


def find_runs(runs_root: str | Path = "runs", competition: str | None = None) -> list[Run]:
    """Every run under ``runs_root/<competition>/<run>/``, optionally of one competition, sorted by path."""
    root = Path(runs_root)
    if not root.is_dir():
        return []
    pattern = f"{competition}/*/config.yaml" if competition else "*/*/config.yaml"
    runs = [load_run(p.parent) for p in sorted(root.glob(pattern))]
    # a folder with another kind of config.yaml (e.g. a pretrained BERT's) is not a run
    runs = [r for r in runs if "model" in r.config]
    return [r for r in runs if competition is None or r.competition == competition]


def fold_scores(runs: list[Run]) -> pd.DataFrame:
    """Long table: run, model, fold, score (complete folds only) for plotting the spread."""
    rows = [
        {"run": r.name, "model": r.model, "fold": k, "score": float(m["score"]), "complete": r.complete}
        for r in runs
        for k, m in r.fold_metrics.items()
    ]
    return pd.DataFrame(rows, columns=["run", "model", "fold", "score", "complete"])


def learning_curves(runs: list[Run]) -> pd.DataFrame:
    frames = [f for f in (r.learning_curves() for r in runs) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "fold", "epoch"])


# ------------------------------------------------------------------------------------------- competitions
def load_competition(spec: str) -> Competition:
    """A contest object from its name (``news_text_cls``: the ``Competition`` subclass in
    ``competitions.news_text_cls.competition``) or from ``module:Class`` (any importable subclass)."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UserError(f"cannot load competition {spec!r}: {exc}") from None
        return cls()
    try:
        module = importlib.import_module(f"competitions.{spec}.competition")
    except ImportError as exc:
        raise UserError(
            f"unknown competition {spec!r} (no competitions/{spec}/competition.py: {exc})"
        ) from None
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, Competition)
            and getattr(value, "name", None) == spec
        ):
            return value()
    raise UserError(f"competitions/{spec}/competition.py defines no Competition subclass named {spec!r}")


@dataclass
class Study:
    """One competition's runs plus what analysing them needs: the contest object and the true labels."""

    competition: Competition
    runs: list[Run]
    runs_root: Path
    data_dir: Path | None = None
    submissions_root: Path = Path("submissions")
    #: where the notebook's sections also save their figures as PNG (None: nowhere)
    figures_dir: Path | None = None

    @property
    def name(self) -> str:
        return self.competition.name

    @property
    def empty(self) -> bool:
        return not self.runs

    def complete_runs(self) -> list[Run]:
        runs = [r for r in self.runs if r.complete]
        return sorted(runs, key=lambda r: r.score, reverse=self.competition.greater_is_better)

    def best_run(self) -> Run | None:
        runs = self.complete_runs()
        return runs[0] if runs else None

    def resolved_data_dir(self) -> Path | None:
        """The data directory: the one given, else the one recorded in the runs' configs, else the default."""
        if self.data_dir is not None:
            return locate(self.data_dir)
        for run in self.runs:
            if run.data_dir:
                return locate(run.data_dir)
        return locate(self.competition.default_data_dir())

    @cached_property
    def train(self):
        """The contest's labelled data (``TrainData``), or ``None`` when its files are not there."""
        data_dir = self.resolved_data_dir()
        if data_dir is None or not data_dir.is_dir():
            return None
        reference = self.best_run() or (self.runs[0] if self.runs else None)
        if reference is not None:
            self.competition.configure(reference.params)  # data choices passed as params (e.g. a split)
        return self.competition.load_train(data_dir)

    def labels_for(self, ids: np.ndarray) -> np.ndarray | None:
        """True targets of the rows ``ids`` (``None`` without data, or when the data lacks those ids)."""
        train = self.train
        if train is None:
            return None
        position = pd.Index(np.asarray(train.ids).astype(str))
        idx = position.get_indexer(np.asarray(ids).astype(str))
        if (idx < 0).any():
            return None
        return (
            np.asarray(train.y)[idx]
            if not isinstance(train.y, list)
            else np.asarray(train.y, dtype=object)[idx]
        )


def parse_mapping(text: str) -> dict[str, str]:
    """``"a=x,b=y"`` -> ``{"a": "x", "b": "y"}`` (the notebook's environment-variable parameters)."""
    out = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"expected name=value in {text!r}, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def open_studies(
    runs_root: str | Path,
    competitions: list[str] | str,
    data_dirs: dict[str, str] | str | None = None,
    submissions_root: str | Path = "submissions",
    figures_dir: str | Path | None = None,
    skip_missing: bool = True,
) -> list[Study]:
    """One :class:`Study` per competition spec (a name, or ``module:Class``); ``data_dirs`` maps a competition
    name to its data directory (default: the one in the runs' configs); ``figures_dir``, when given, receives a
    PNG of every figure the comparison shows. A competition whose code cannot be imported is skipped with a
    printed line (``skip_missing``) rather than stopping the notebook."""
    if isinstance(competitions, str):
        competitions = [c.strip() for c in competitions.split(",") if c.strip()]
    if isinstance(data_dirs, str):
        data_dirs = parse_mapping(data_dirs)
    root = locate(runs_root)
    studies = []
    for spec in competitions:
        try:
            comp = load_competition(spec)
        except UserError as exc:
            if not skip_missing:
                raise
            print(f"{spec}: skipped ({exc})")
            continue
        data_dir = (data_dirs or {}).get(comp.name)
        studies.append(
            Study(
                competition=comp,
                runs=find_runs(root, comp.name),
                runs_root=root,
                data_dir=Path(data_dir) if data_dir else None,
                submissions_root=locate(submissions_root),
                figures_dir=Path(figures_dir) if figures_dir else None,
            )
        )
    return studies


def describe(value: Any) -> str:
    """A short printable form of a parameter value."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(describe(v) for v in value) + "]"
    return str(value)

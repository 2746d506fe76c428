"""Runs read back for comparison: the leaderboard, the blender and the comparison notebook read run folders
through :mod:`common.store` (the one module that knows their layout); this module groups them per competition
(:class:`Study`) with what analysing them needs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.competition import Competition
from common.errors import UserError
from common.store import REPO_ROOT, BrokenRun, Run, open_run
from common.store import find_runs as find_all_runs

__all__ = ["REPO_ROOT", "BrokenRun", "Run", "Study", "find_runs", "load_run", "locate", "open_studies"]


def locate(path: str | Path) -> Path:
    """``path`` as given when it exists (relative to the working directory), else relative to the repository root
    (so the notebook finds ``runs/`` whether Jupyter starts in the repository or in ``notebooks/``)."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    candidate = REPO_ROOT / path
    return candidate if candidate.exists() else path


def load_run(path: str | Path) -> Run:
    return open_run(path)


def find_runs(runs_root: str | Path = "runs", competition: str | None = None) -> list[Run]:
    """The readable runs under ``runs_root`` (damaged ones are left out; the leaderboard lists those too)."""
    return [r for r in find_all_runs(runs_root, competition) if isinstance(r, Run)]


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
        return sorted(runs, key=lambda r: r.score, reverse=self.competition.metric.greater_is_better)

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
        from common.blend import data_config

        reference = self.best_run() or (self.runs[0] if self.runs else None)
        data = (
            data_config(self.competition, reference)
            if reference is not None
            else self.competition.data_config()
        )
        return self.competition.load_train(data_dir, data)

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

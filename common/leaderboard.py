"""The leaderboard: every run under ``runs/`` with its CV score, fold spread, time, key params and submission.

Complete runs are ranked by CV score (per competition, in the metric's direction); a run with missing folds is
listed after them as ``incomplete`` with the folds it has, never averaged into a score; a run folder that cannot
be read (damaged files, an older layout) is listed as ``broken: <reason>`` and never hides the others. Each run
shows the git commit it was trained at, and ``data changed`` when its training files no longer match the content
fingerprints it recorded.

Where a submission of a run got a public score (``lb-score``, recorded in ``submissions/<comp>/scores.csv`` by
:mod:`common.ledger`), the run's latest one shows beside its CV, with its board (``a``/``b``) and a note when it was
a full refit's or a ``predict`` file's, or when the run's CV changed since (the score is of an earlier version).
A run trained with pseudo-labelled test rows (:mod:`common.pseudo`) says so in the ``pseudo`` column.

``python -m common.leaderboard [--runs-root runs] [--competition C] [--out runs/leaderboard.csv]
[--submissions-dir submissions]``
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import atomic_path
from common.errors import UserError
from common.ledger import Ledger, run_key
from common.runs import describe
from common.store import SUBMISSION, BrokenRun, Run, broken_reason
from common.store import find_runs as find_all_runs
from common.trainer import TrainerConfig

COLUMNS = [
    "competition",
    "rank",
    "model",
    "run",
    "status",
    "metric",
    "cv_score",
    "lb_score",
    "lb_board",
    "lb_note",
    "fold_mean",
    "fold_std",
    "folds_done",
    "fold_scores",
    "seconds",
    "key_params",
    "pseudo",
    "commit",
    "submission",
    "complete",
    "path",
]
#: params worth showing even when a model has a single run
INTERESTING = (
    "epochs",
    "lr",
    "batch_size",
    "max_len",
    "backbone",
    "img_h",
    "img_w",
    "classifier",
    "ngram_range",
    "max_features",
    "C",
)


def key_params(run: Run, siblings: Sequence[Run]) -> str:
    """Params that differ between runs of the same model (else the usual suspects), as ``k=v`` pairs; a blend
    shows its members' weights."""
    if run.is_blend and run.cv and run.cv.get("weights"):
        return "weights: " + ", ".join(f"{k}={v:.2f}" for k, v in run.cv["weights"].items())
    params = {k: v for k, v in run.params.items() if k not in TrainerConfig.RUNTIME_KEYS}
    others = [s.params for s in siblings if s is not run]
    varying = sorted(k for k in params if any(o.get(k) != params[k] for o in others)) if others else []
    keys = varying or [k for k in INTERESTING if k in params]
    return ", ".join(f"{k}={describe(params[k])}" for k in keys)


def archived_submission(run: Run, submissions_root: Path, written: dict | None = None) -> Path | None:
    """The run's latest archived submission: from the submission ledger when it recorded one that still exists,
    else the newest ``submissions/<comp>/<model>-cv<score>-*.csv`` matching this run's score (an archive written
    before the ledger existed)."""
    if not run.complete:
        return None
    row = (written or {}).get(run_key(run.path))
    if row is not None and Path(row["file"]).is_file():
        return Path(row["file"])
    folder = submissions_root / run.competition
    matches = sorted(folder.glob(f"{run.model}-cv{run.score:.5f}-*.csv")) if folder.is_dir() else []
    return matches[-1] if matches else None


def pseudo_note(run: Run) -> str:
    """``from <run> (t=0.95, ~171 rows/fold)`` for a pseudo-labelled run, else empty."""
    pseudo = run.pseudo
    if pseudo is None:
        return ""
    rows = list((pseudo.get("rows") or {}).values())
    per_fold = f", ~{np.mean(rows):.0f} rows/fold" if rows else ""
    return f"from {Path(str(pseudo.get('from', '?'))).name} (t={pseudo.get('threshold')}{per_fold})"


def lb_columns(run: Run, scored: dict | None) -> dict:
    """The latest public score of ``run`` (``scored``: its latest scores.csv row) as leaderboard columns."""
    if scored is None:
        return {"lb_score": math.nan, "lb_board": "", "lb_note": ""}
    notes = []
    if scored["kind"] in ("full", "predict"):
        notes.append("full refit" if scored["kind"] == "full" else "predict file")
    then = float(scored["cv"])
    if not math.isnan(then) and run.complete and not math.isclose(then, run.score, rel_tol=0, abs_tol=1e-12):
        notes.append(f"earlier version, CV then {then:.5f}")
    return {"lb_score": float(scored["score"]), "lb_board": scored["board"], "lb_note": "; ".join(notes)}


def _row(
    run: Run, siblings: Sequence[Run], submissions_root: Path, scored: dict | None, written: dict | None
) -> dict:
    scores = run.fold_scores
    archived = archived_submission(run, submissions_root, written)
    own = run.path / SUBMISSION
    submission = archived or (own if own.is_file() else None)
    done = "-" if run.is_blend else f"{len(run.fold_metrics)}/{run.n_folds}"
    status = "complete" if run.complete else "incomplete"
    if run.data_changed():
        status += ", data changed"
    return {
        "competition": run.competition,
        "model": run.model,
        "run": run.name,
        "status": status,
        "metric": run.metric,
        "cv_score": run.score,
        **lb_columns(run, scored),
        "fold_mean": float(np.mean(scores)) if scores else math.nan,
        "fold_std": float(np.std(scores)) if len(scores) > 1 else math.nan,
        "folds_done": done,
        "fold_scores": " ".join(f"{s:.4f}" for s in scores),
        "seconds": round(run.seconds, 1),
        "key_params": key_params(run, siblings),
        "pseudo": pseudo_note(run),
        "commit": run.commit,
        "submission": str(submission) if submission else "",
        "complete": run.complete,
        "path": str(run.path),
    }


def _ledger_maps(submissions_root: Path, competition: str) -> tuple[dict, dict]:
    """(latest score by run, latest written submission by run) of one competition's ledger; a damaged ledger is
    reported on stderr and ignored, so it never hides the leaderboard."""
    ledger = Ledger(submissions_root, competition)
    try:
        return ledger.latest_score_by_run(), ledger.latest_written_by_run()
    except UserError as exc:
        print(f"warning: {exc}; public scores not shown", file=sys.stderr, flush=True)
        return {}, {}


def _broken_row(run: BrokenRun) -> dict:
    return {
        "competition": run.competition,
        "model": "?",
        "run": run.name,
        "status": f"broken: {run.reason}",
        "metric": None,
        "cv_score": math.nan,
        "lb_score": math.nan,
        "lb_board": "",
        "lb_note": "",
        "fold_mean": math.nan,
        "fold_std": math.nan,
        "folds_done": "",
        "fold_scores": "",
        "seconds": math.nan,
        "key_params": "",
        "pseudo": "",
        "commit": "",
        "submission": "",
        "complete": False,
        "path": str(run.path),
    }


def leaderboard(
    runs_root: str | Path = "runs",
    competition: str | None = None,
    submissions_root: str | Path = "submissions",
) -> pd.DataFrame:
    """One row per run (see ``COLUMNS``), grouped by competition, complete runs first by CV score (best first,
    respecting the metric's direction; ``rank`` 1 is the best), then incomplete runs with NaN ``cv_score``."""
    found = find_all_runs(runs_root, competition)
    broken = [b for b in found if isinstance(b, BrokenRun)]
    readable = []
    for r in found:
        if isinstance(r, Run):
            try:
                r.params  # noqa: B018 - read now: every row of the model compares its siblings' params
            except Exception as exc:  # noqa: BLE001 - one damaged run never hides the others
                broken.append(BrokenRun(r.path, broken_reason(exc)))
            else:
                readable.append(r)
    ledgers = {c: _ledger_maps(Path(submissions_root), c) for c in sorted({r.competition for r in readable})}
    rows, runs = [], []
    for r in readable:
        try:
            rows.append(
                _row(
                    r,
                    [s for s in readable if s.competition == r.competition and s.model == r.model],
                    Path(submissions_root),
                    ledgers[r.competition][0].get(run_key(r.path)),
                    ledgers[r.competition][1],
                )
            )
        except Exception as exc:  # noqa: BLE001 - a file damaged in a way the store does not check
            broken.append(BrokenRun(r.path, broken_reason(exc)))
        else:
            runs.append(r)
    rows += [_broken_row(b) for b in broken]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if frame.empty:
        return frame
    parts = []
    for _, group in frame.groupby("competition", sort=True):
        greater = next(
            (r.greater_is_better for r in runs if r.competition == group["competition"].iat[0]), True
        )
        done = group[group["complete"]].assign(
            _blend=lambda f: f["model"] == "blend"
        )  # ties: single models first
        done = done.sort_values(["cv_score", "_blend"], ascending=[not greater, True], kind="stable")
        done = done.drop(columns="_blend")
        done = done.assign(rank=np.arange(1, len(done) + 1))
        pending = group[~group["complete"]].sort_values("run", kind="stable")
        parts.append(pd.concat([done, pending]) if len(pending) else done)
    frame = pd.concat(parts, ignore_index=True)
    frame["rank"] = frame["rank"].astype("Int64")
    return frame[COLUMNS]


def format_leaderboard(frame: pd.DataFrame) -> str:
    """The table for a terminal: one block per competition."""
    if frame.empty:
        return "no runs found"
    shown = [
        "rank",
        "model",
        "run",
        "status",
        "cv_score",
        "fold_std",
        "folds_done",
        "seconds",
        "commit",
        "key_params",
    ]
    blocks = []
    for comp, group in frame.groupby("competition", sort=True):
        metric = group["metric"].dropna().iat[0] if group["metric"].notna().any() else "score"
        columns = list(shown)
        if group["lb_score"].notna().any():  # public scores recorded: the latest one beside the CV
            columns.insert(columns.index("cv_score") + 1, "lb")
        if (group["pseudo"] != "").any():
            columns.insert(columns.index("key_params"), "pseudo")
        view = group.assign(lb=[_lb_text(r) for r in group.itertuples(index=False)])[columns].copy()
        view["cv_score"] = [f"{s:.5f}" if not math.isnan(s) else "incomplete" for s in view["cv_score"]]
        view["fold_std"] = [f"{s:.5f}" if not math.isnan(s) else "" for s in view["fold_std"]]
        view["rank"] = [str(r) if not pd.isna(r) else "-" for r in view["rank"]]
        view = view.rename(columns={"cv_score": f"cv {metric}"})
        blocks.append(f"== {comp} ==\n{view.to_string(index=False)}")
        subs = group.loc[group["submission"] != "", ["run", "submission"]]
        if len(subs):
            blocks.append("\n".join(f"  {r}: {s}" for r, s in subs.itertuples(index=False)))
    return "\n\n".join(blocks)


def _lb_text(row) -> str:
    if math.isnan(row.lb_score):
        return ""
    note = f", {row.lb_note}" if row.lb_note else ""
    return f"{row.lb_score:.5f} ({row.lb_board}{note})"


def write_leaderboard(frame: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def leaderboard_cli(
    runs_root: str | Path,
    competition: str | None = None,
    out: str | Path | None = None,
    submissions_root: str | Path = "submissions",
) -> pd.DataFrame:
    """Print the leaderboard and write it as CSV (default ``<runs_root>/leaderboard.csv``, or
    ``<runs_root>/<competition>/leaderboard.csv`` for one competition)."""
    runs_root = Path(runs_root)
    frame = leaderboard(runs_root, competition, submissions_root)
    print(format_leaderboard(frame), flush=True)
    if frame.empty:
        return frame
    if out is None:
        out = runs_root / competition / "leaderboard.csv" if competition else runs_root / "leaderboard.csv"
    print(f"\nwritten: {write_leaderboard(frame, out)}", flush=True)
    return frame


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.leaderboard", description=__doc__.splitlines()[0])
    parser.add_argument("--runs-root", default="runs", help="where runs live (default runs)")
    parser.add_argument("--competition", help="only this competition")
    parser.add_argument("--out", help="CSV to write (default <runs-root>/leaderboard.csv)")
    parser.add_argument(
        "--submissions-dir",
        default="submissions",
        help="archive and ledger of submissions (default submissions)",
    )
    args = parser.parse_args(argv)
    try:
        leaderboard_cli(args.runs_root, args.competition, args.out, args.submissions_dir)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

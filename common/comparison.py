"""The sections of ``notebooks/compare_baselines.ipynb``: each takes a :class:`~common.runs.Study` (one
competition's runs), shows its tables and figures, and says in one line when it has nothing to show (no runs, no
data, not that kind of contest) instead of failing. The notebook itself only calls these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from common import cv_lb, diagnostics, plots
from common.errors import UserError
from common.fingerprint import changed, fingerprints
from common.leaderboard import leaderboard
from common.ledger import Ledger
from common.runs import Run, Study, fold_scores, learning_curves
from common.store import OOF, AdversarialStore

TABLE_COLUMNS = ["rank", "model", "run", "status", "cv_score", "lb_score", "lb_board", "fold_mean", "fold_std",
                 "folds_done", "seconds", "key_params", "pseudo", "submission"]  # fmt: skip


def show(obj) -> None:
    """Display in a notebook (rich tables and images), print elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with the notebook extras
        print(obj)
        return
    if get_ipython() is None:
        print(obj)
    else:
        display(obj)


def show_figure(fig, study: Study, name: str) -> None:
    png = plots.to_png(fig)
    if study.figures_dir is not None:
        study.figures_dir.mkdir(parents=True, exist_ok=True)
        (study.figures_dir / f"{study.name}-{name}.png").write_bytes(png)
    try:
        from IPython import get_ipython
        from IPython.display import Image
    except ImportError:  # pragma: no cover
        return
    if get_ipython() is not None:
        show(Image(data=png))


def _has_runs(study: Study) -> bool:
    if study.empty:
        print(
            f"{study.name}: no runs under {study.runs_root / study.name} (train one: make train COMP={study.name})"
        )
        return False
    return True


def _oof_run(study: Study, ndim: int) -> tuple[Run, np.ndarray, np.ndarray] | None:
    """The best complete run with merged OOF probabilities of ``ndim`` dimensions."""
    for run in study.complete_runs():
        if (run.path / OOF).is_file():
            oof, ids = run.oof()
            if oof.ndim == ndim:
                return run, oof, ids
            return None
    return None


def _labelled(study: Study, ids: np.ndarray) -> np.ndarray | None:
    y = study.labels_for(ids)
    if y is None:
        print(
            f"{study.name}: the training data is not at {study.resolved_data_dir()} (or lacks the runs' rows); skipped"
        )
    return y


# ------------------------------------------------------------------------------------------------ sections
def overview(studies: Sequence[Study]) -> pd.DataFrame:
    """One row per competition: runs, complete runs, the best run and its score."""
    rows = []
    for study in studies:
        best = study.best_run()
        rows.append(
            {
                "competition": study.name,
                "metric": study.competition.metric_name,
                "runs": len(study.runs),
                "complete": len(study.complete_runs()),
                "best run": best.name if best else "",
                "best CV": best.score if best else math.nan,
                "data": str(study.resolved_data_dir()),
            }
        )
        if study.empty:
            print(f"{study.name}: no runs yet under {study.runs_root / study.name}")
    frame = pd.DataFrame(rows)
    show(frame)
    return frame


def leaderboard_section(study: Study) -> pd.DataFrame | None:
    if not _has_runs(study):
        return None
    board = leaderboard(study.runs_root, study.name, study.submissions_root)
    print(f"{study.name} — CV {study.competition.metric_name}, best first; incomplete runs are not scored")
    show(board[TABLE_COLUMNS])
    return board


def cv_spread_section(study: Study) -> None:
    if not _has_runs(study):
        return
    board = leaderboard(study.runs_root, study.name, study.submissions_root)
    folds = fold_scores(study.runs)
    show_figure(plots.cv_by_run(board, folds, study.competition.metric_name), study, "cv-by-run")


def _best_run_predictions(study: Study, ndim: int, missing: str):
    """(run, OOF probabilities, their ids, targets, decoded predictions) of the best complete run whose
    probabilities have ``ndim`` axes, or None (with a line saying why)."""
    if not _has_runs(study):
        return None
    found = _oof_run(study, ndim=ndim)
    if found is None:
        print(f"{study.name}: no complete run with {missing}")
        return None
    run, oof, ids = found
    y = _labelled(study, ids)
    if y is None:
        return None
    return run, oof, ids, y, diagnostics.decode(study.competition, oof, ids)


def classification_section(study: Study) -> pd.DataFrame | None:
    """Per-class precision/recall/F1 and the confusion matrix of the best run (``(n, n_classes)`` contests)."""
    found = _best_run_predictions(study, 2, "(n, n_classes) probabilities; per-class analysis skipped")
    if found is None:
        return None
    run, _, _, y, pred = found
    report = diagnostics.per_class_report(y, pred)
    print(
        f"{study.name}: best run {run.name} ({run.model}), macro-F1 {report['f1'].mean():.5f} over {len(y)} OOF rows"
    )
    show(report.round(4))
    show_figure(plots.per_class_f1(report, f"{run.name}: F1 per class"), study, "per-class-f1")
    matrix = diagnostics.confusion(y, pred)
    show_figure(plots.confusion_matrix(matrix, f"{run.name}: confusion (row-normalised)"), study, "confusion")
    return report


def sequence_section(study: Study, n_hardest: int = 12) -> pd.DataFrame | None:
    """Accuracy by number of characters and the most confident mistakes with their images (string contests)."""
    found = _best_run_predictions(study, 3, "per-position probabilities; string analysis skipped")
    if found is None:
        return None
    run, oof, ids, y, pred = found
    table = diagnostics.accuracy_by_length(y, pred)
    print(f"{study.name}: best run {run.name} ({run.model}), whole-string accuracy by number of digits")
    show(table.round(4))
    show_figure(
        plots.accuracy_by_length(table, f"{run.name}: accuracy by length"), study, "accuracy-by-length"
    )
    worst = diagnostics.hardest(ids, y, pred, oof, n_hardest)
    if worst.empty:
        print(f"{study.name}: {run.name} makes no mistake on the OOF rows")
        return table
    train, data_dir = study.train, study.resolved_data_dir()
    position = pd.Index(np.asarray(train.ids).astype(str))
    images = [
        diagnostics.load_image(train.X, int(position.get_loc(i)), str(i), data_dir)
        for i in worst["id"].astype(str)
    ]
    captions = [
        f"{i}\ntrue {t} / pred {p or '(none)'} ({c:.2g})"
        for i, t, p, c in worst[["id", "true", "pred", "confidence"]].values
    ]
    print(f"{study.name}: the {len(worst)} most confident mistakes of {run.name}")
    show_figure(plots.image_grid(images, captions), study, "hardest")
    return table


def learning_curves_section(study: Study) -> pd.DataFrame | None:
    if not _has_runs(study):
        return None
    curves = learning_curves(study.runs)
    if curves.empty:
        print(f"{study.name}: no run has per-epoch logs (fold*/log.jsonl); deep models write them")
        return None
    show_figure(plots.learning_curves(curves), study, "learning-curves")
    return curves


def blend_section(study: Study) -> pd.DataFrame | None:
    """Each blend's members and weights beside the blend's in-sample and cross-fitted scores."""
    if not _has_runs(study):
        return None
    blends = [r for r in study.complete_runs() if r.is_blend and r.cv.get("members")]
    if not blends:
        print(
            f'{study.name}: no blend yet (make blend COMP={study.name} RUNS="runs/{study.name}/a runs/{study.name}/b")'
        )
        return None
    tables = []
    for run in blends:
        members = pd.DataFrame(run.cv["members"])[["run", "weight", "score"]]
        best_member = (
            members["score"].max() if study.competition.greater_is_better else members["score"].min()
        )
        crossfit = run.cv.get("score_crossfit")
        crossfit = float(run.score if crossfit is None else crossfit)
        print(
            f"{study.name}/{run.name}: blend {run.score:.5f} (fitted on the same OOF) / {crossfit:.5f} (cross-fitted) "
            f"vs best member {best_member:.5f}: gain {run.score - best_member:+.5f} / {crossfit - best_member:+.5f}"
        )
        show(members.round(5))
        fig = plots.blend_gain(
            members["run"], members["score"], run.score, crossfit, study.competition.metric_name
        )
        show_figure(fig, study, f"blend-{run.name}")
        tables.append(members.assign(blend=run.name))
    return pd.concat(tables, ignore_index=True)


def cv_lb_section(study: Study) -> pd.DataFrame | None:
    """CV against the public LB per uploaded submission (scores recorded with ``lb-score``): Spearman's rank
    correlation per board, and the runs whose CV-LB gap is more than 2 MAD from the median gap (see
    :mod:`common.cv_lb`)."""
    try:
        scores = Ledger(study.submissions_root, study.name).scores()
    except UserError as exc:
        print(f"{study.name}: {exc}; skipped")
        return None
    if scores.empty:
        print(
            f"{study.name}: no public scores recorded yet (after an upload: make lb-score COMP={study.name} "
            f"SUB=submissions/{study.name}/<file>.csv SCORE=<public score> [BOARD=b])"
        )
        return None
    table = cv_lb.cv_lb_table(scores)
    if table.empty:
        print(
            f"{study.name}: the scored submissions have no CV (their runs were never merged); nothing to compare"
        )
        return None
    summary = cv_lb.cv_lb_summary(table)
    for row in summary.itertuples(index=False):
        print(f"{study.name} {cv_lb.describe_board(row, table)}")
    show(table.round(5))
    show_figure(plots.cv_vs_lb(table, summary, study.competition.metric_name), study, "cv-vs-lb")
    return table


def adversarial_section(study: Study, n_rows: int = 10) -> dict | None:
    """The adversarial validation of ``runs/<comp>/adversarial/`` (``make adversarial``): its AUC and fold spread,
    the distributions of the training and test rows' test-likeness, the separating features and the most
    test-like training rows. Independent of the runs."""
    store = AdversarialStore(study.runs_root / study.name / "adversarial")
    try:
        report = store.read_report()
        scores = store.read_scores() if report is not None else None
    except UserError as exc:
        print(f"{study.name}: adversarial validation unreadable ({exc})")
        return None
    if report is None:
        print(f"{study.name}: no adversarial validation yet (make adversarial COMP={study.name})")
        return None
    recorded = {
        **(report.get("inputs") or {}).get("train", {}),
        **(report.get("inputs") or {}).get("test", {}),
    }
    stale = changed(recorded, fingerprints(recorded))
    print(
        f"{study.name}: adversarial AUC {report['auc']:.3f} +/- {report['auc_std']:.3f} over {report['n_folds']} "
        f"folds ({report['n_train']} training vs {report['n_test']} test rows): {report['verdict']}"
        + (f" [made from data that has changed since: {', '.join(stale)}]" if stale else "")
    )
    features = pd.DataFrame(report["features"])
    if len(features):
        show(features[["feature", "weight", "more_in", "train", "test", "auc_alone"]])
    fig = plots.adversarial(
        scores.loc[scores["set"] == "train", "score"].to_numpy(),
        scores.loc[scores["set"] == "test", "score"].to_numpy(),
        report["auc"],
        report["auc_std"],
        features,
    )
    show_figure(fig, study, "adversarial")
    print(f"{study.name}: the {min(n_rows, len(report['most_test_like']))} most test-like training rows")
    show(pd.DataFrame(report["most_test_like"]).head(n_rows))
    return report

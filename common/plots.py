"""Figures for comparing runs: each function returns a matplotlib ``Figure`` (built without pyplot, so it
needs no display and never shows twice in a notebook); :func:`to_png` renders one."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def _subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """Like ``pyplot.subplots`` but without pyplot: no backend, no global figure registry, no auto-display."""
    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(nrows, ncols, **kwargs)


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def cv_by_run(board: pd.DataFrame, folds: pd.DataFrame, metric: str) -> Figure:
    """Each run's fold scores (dots) and CV score (bar), best run on top; incomplete runs hatched."""
    runs = list(board["run"])
    fig, ax = _subplots(figsize=(7, 0.45 * len(runs) + 1.2))
    y = np.arange(len(runs))[::-1]
    for yi, row in zip(y, board.itertuples(index=False), strict=True):
        score = row.cv_score if row.complete else np.nan
        if not np.isnan(score):
            ax.barh(yi, score, color="tab:blue", alpha=0.35)
        points = folds.loc[folds["run"] == row.run, "score"].to_numpy()
        ax.scatter(
            points, np.full(len(points), yi), color="tab:blue" if row.complete else "tab:gray", zorder=3, s=18
        )
        if len(points) > 1:
            ax.errorbar(np.mean(points), yi, xerr=np.std(points), color="black", capsize=3, zorder=4)
    labels = [
        f"{r} ({m})" + ("" if c else " [incomplete]")
        for r, m, c in board[["run", "model", "complete"]].values
    ]
    ax.set_yticks(y, labels)
    lo = np.nanmin(np.r_[folds["score"].to_numpy(), board["cv_score"].to_numpy()]) if len(folds) else 0.0
    hi = np.nanmax(np.r_[folds["score"].to_numpy(), board["cv_score"].to_numpy()]) if len(folds) else 1.0
    pad = max((hi - lo) * 0.15, 0.005)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel(f"{metric} (bar: CV on all OOF rows; dots: folds; whisker: fold mean +/- std)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


#: the score panel's note when no run kept an inner holdout
NO_HOLDOUT = "no run logged an inner-holdout score\n(e.g. valid_size=0: every training row is trained on)"


def learning_curves(curves: pd.DataFrame) -> Figure:
    """Validation score and train/valid loss by epoch, one colour per run (mean over folds). A run with no inner
    holdout (``valid_size=0``) has only its train loss; when no run has one, the score panel says so."""
    fig, (ax_score, ax_loss) = _subplots(1, 2, figsize=(11, 3.8))
    for i, (run, frame) in enumerate(curves.groupby("run", sort=True)):
        color = f"C{i % 10}"
        mean = frame.groupby("epoch").mean(numeric_only=True)
        logged = [
            c for c in ("valid_score", "train_loss", "valid_loss") if c in mean and mean[c].notna().any()
        ]
        if "valid_score" in logged:
            for _, fold in frame.groupby("fold"):
                ax_score.plot(fold["epoch"], fold["valid_score"], color=color, alpha=0.25, lw=1)
            ax_score.plot(mean.index, mean["valid_score"], color=color, lw=2, label=run)
        if "train_loss" in logged:
            ax_loss.plot(mean.index, mean["train_loss"], color=color, lw=2, label=f"{run} train")
        if "valid_loss" in logged:
            ax_loss.plot(mean.index, mean["valid_loss"], color=color, lw=2, ls="--", label=f"{run} valid")
    ax_score.set(xlabel="epoch", ylabel="validation score", title="inner-holdout score (thin: folds)")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss (solid: train, dashed: valid)")
    for ax in (ax_score, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if not ax_score.lines:
        ax_score.text(
            0.5, 0.5, NO_HOLDOUT, ha="center", va="center", color="gray", transform=ax_score.transAxes
        )
        ax_score.set(xticks=[], yticks=[], xlabel="", ylabel="")
    fig.tight_layout()
    return fig


def per_class_f1(report: pd.DataFrame, title: str) -> Figure:
    fig, ax = _subplots(figsize=(7, 3.2))
    ax.bar(report["class"].astype(str), report["f1"], color="tab:blue")
    for x, (f, s) in enumerate(zip(report["f1"], report["support"], strict=True)):
        ax.text(x, f + 0.01, str(int(s)), ha="center", fontsize=7, color="gray")
    ax.set(xlabel="class (grey: support)", ylabel="F1", ylim=(0, 1.08), title=title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_matrix(matrix: pd.DataFrame, title: str) -> Figure:
    n = len(matrix)
    fig, ax = _subplots(figsize=(0.45 * n + 2.5, 0.45 * n + 2))
    image = ax.imshow(matrix.to_numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), matrix.columns.astype(str))
    ax.set_yticks(range(n), matrix.index.astype(str))
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                v = matrix.iat[i, j]
                if v >= 0.01:
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if v > 0.5 else "black",
                    )
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def accuracy_by_length(table: pd.DataFrame, title: str) -> Figure:
    fig, ax = _subplots(figsize=(6, 3.2))
    ax.bar(table["n_chars"].astype(str), table["accuracy"], color="tab:green")
    for x, (a, n) in enumerate(zip(table["accuracy"], table["n"], strict=True)):
        ax.text(x, a + 0.01, f"n={n}", ha="center", fontsize=7, color="gray")
    ax.set(xlabel="number of digits", ylabel="whole-string accuracy", ylim=(0, 1.08), title=title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def image_grid(images: Sequence[np.ndarray | None], captions: Sequence[str], ncols: int = 4) -> Figure:
    nrows = max(1, int(np.ceil(len(images) / ncols)))
    fig, axes = _subplots(nrows, ncols, figsize=(2.6 * ncols, 1.9 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, captions, strict=False):
        if image is not None:
            ax.imshow(image)
        else:
            ax.text(0.5, 0.5, "image not found", ha="center", va="center", fontsize=8)
        ax.set_title(caption, fontsize=8)
    fig.tight_layout()
    return fig


def blend_gain(
    names: Sequence[str], scores: Sequence[float], blend: float, crossfit: float, metric: str
) -> Figure:
    """Members' OOF scores beside the blend's (fitted on the same OOF) and its cross-fitted score."""
    labels = [*names, "blend (in-sample)", "blend (cross-fitted)"]
    values = [*scores, blend, crossfit]
    colors = ["tab:blue"] * len(names) + ["tab:orange", "tab:red"]
    fig, ax = _subplots(figsize=(7, 0.45 * len(labels) + 1.2))
    y = np.arange(len(labels))[::-1]
    ax.barh(y, values, color=colors, alpha=0.7)
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, f" {v:.4f}", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.3, 0.005)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel(metric)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def cv_vs_lb(table: pd.DataFrame, summary: pd.DataFrame, metric: str) -> Figure:
    """Public LB score against CV, one point per submission and one colour per board; ``LB = CV`` dashed, each
    board's ``LB = CV + median gap`` dotted; out-of-line submissions ringed in red and named."""
    fig, ax = _subplots(figsize=(6.5, 5))
    titles, ringed = [], False
    for i, (board, group) in enumerate(table.groupby("board", sort=True)):
        color = f"C{i % 10}"
        ax.scatter(group["cv"], group["lb"], color=color, s=30, zorder=3, label=f"board {board}")
        flagged = group[group["out_of_line"]]
        label = "gap > 2 MAD from the median" if len(flagged) and not ringed else None
        ringed = ringed or bool(len(flagged))
        ax.scatter(
            flagged["cv"],
            flagged["lb"],
            s=140,
            facecolors="none",
            edgecolors="red",
            lw=1.5,
            zorder=4,
            label=label,
        )
        for row in flagged.itertuples(index=False):
            ax.annotate(row.run, (row.cv, row.lb), xytext=(5, 5), textcoords="offset points", fontsize=8)
        row = summary.set_index("board").loc[board]
        lo, hi = group["cv"].min(), group["cv"].max()
        ax.plot([lo, hi], [lo + row.median_gap, hi + row.median_gap], color=color, ls=":", lw=1)
        rho = "n/a" if np.isnan(row.spearman) else f"{row.spearman:+.2f}"
        titles.append(f"board {board}: Spearman {rho} (n={int(row.submissions)})")
    values = np.r_[table["cv"].to_numpy(), table["lb"].to_numpy()]
    lo, hi = float(values.min()), float(values.max())
    pad = max((hi - lo) * 0.1, 0.002)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="gray", ls="--", lw=1, label="LB = CV")
    ax.set(xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad))
    ax.set(xlabel=f"CV {metric}", ylabel=f"public LB {metric}", title="\n".join(titles))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def adversarial(
    train_scores: np.ndarray, test_scores: np.ndarray, auc: float, auc_std: float, features: pd.DataFrame
) -> Figure:
    """Adversarial validation: the out-of-fold test-likeness of training and test rows (two histograms that
    overlap when the sets look alike), and the weights of the features that separate them most."""
    fig, (ax_scores, ax_features) = _subplots(1, 2, figsize=(11, 3.6))
    bins = np.linspace(0.0, 1.0, 41)
    for scores, label, color in (
        (train_scores, "training rows", "tab:blue"),
        (test_scores, "test rows", "tab:red"),
    ):
        ax_scores.hist(
            scores, bins=bins, density=True, alpha=0.45, color=color, label=f"{label} (n={len(scores)})"
        )
    ax_scores.set(
        xlabel="test-likeness (the classifier's out-of-fold probability of 'test')",
        ylabel="density",
        title=f"AUC {auc:.3f} +/- {auc_std:.3f} (0.5: indistinguishable)",
    )
    ax_scores.legend(fontsize=8)
    ax_scores.grid(alpha=0.3)
    if len(features):
        top = features.iloc[:10][::-1]
        colors = ["tab:red" if m == "test" else "tab:blue" for m in top["more_in"]]
        ax_features.barh(np.arange(len(top)), top["weight"], color=colors, alpha=0.7)
        ax_features.set_yticks(np.arange(len(top)), top["feature"].astype(str))
        ax_features.set(
            xlabel="weight (red: larger in test, blue: larger in train)", title="separating features"
        )
        ax_features.grid(axis="x", alpha=0.3)
    else:
        ax_features.axis("off")
    fig.tight_layout()
    return fig

"""How well the CV predicts the public leaderboard, from the scores recorded with ``lb-score``
(:mod:`common.ledger`): one point per uploaded submission, the Spearman rank correlation of CV and LB per board, and
the submissions whose CV-LB gap is out of line with the others.

The rule for "out of line": on each board, ``gap = LB - CV`` of every submission; a submission is flagged when its
gap lies more than :data:`GAP_MADS` (2) median absolute deviations from the median gap of that board's
submissions (``|gap - median| > 2 * MAD``, MAD the raw median of ``|gap - median|``, not scaled to a standard
deviation). The median and MAD ignore the outliers they are looking for, which a mean and standard deviation
would not with a handful of uploads. When the MAD is 0 (most gaps equal), any gap that differs from the median is
flagged. Boards with fewer than :data:`MIN_SUBMISSIONS` (3) submissions get neither a correlation nor flags.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

GAP_MADS = 2.0
MIN_SUBMISSIONS = 3
TABLE_COLUMNS = ["board", "run", "model", "kind", "file", "cv", "lb", "gap", "gap_mads", "out_of_line"]
SUMMARY_COLUMNS = ["board", "submissions", "spearman", "p_value", "median_gap", "mad", "out_of_line"]


def cv_lb_table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (submission content, run, board), its latest recorded score: ``cv``, ``lb``, ``gap = lb - cv``,
    ``gap_mads`` (distance from the board's median gap in MADs) and ``out_of_line`` (see the module docstring).
    Uploads without a CV (a run that was never merged) are left out."""
    usable = scores.dropna(subset=["cv", "score"])
    latest = usable.groupby(["hash", "run", "board"], sort=False).tail(1)
    table = pd.DataFrame(
        {
            "board": latest["board"].astype(str),
            "run": [Path(str(r)).name for r in latest["run"]],
            "model": latest["model"],
            "kind": latest["kind"],
            "file": [Path(str(f)).name for f in latest["file"]],
            "cv": latest["cv"].astype(float),
            "lb": latest["score"].astype(float),
        }
    ).reset_index(drop=True)
    table["gap"] = table["lb"] - table["cv"]
    table["gap_mads"] = np.nan
    table["out_of_line"] = False
    for rows in table.groupby("board").groups.values():
        gaps = table.loc[rows, "gap"].to_numpy()
        if len(gaps) < MIN_SUBMISSIONS:
            continue
        distance = np.abs(gaps - np.median(gaps))
        mad = float(np.median(distance))
        with np.errstate(divide="ignore", invalid="ignore"):
            mads = np.where(distance <= 1e-12, 0.0, distance / mad if mad > 0 else np.inf)
        table.loc[rows, "gap_mads"] = mads
        table.loc[rows, "out_of_line"] = mads > GAP_MADS
    return table[TABLE_COLUMNS].sort_values(["board", "cv"], kind="stable").reset_index(drop=True)


def cv_lb_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per board: number of submissions, Spearman's rho of CV and LB (and its p-value), median gap, MAD, and the
    runs out of line (NaN / empty below :data:`MIN_SUBMISSIONS` submissions)."""
    rows = []
    for board, group in table.groupby("board", sort=True):
        rho = p_value = math.nan
        if len(group) >= MIN_SUBMISSIONS:
            with warnings.catch_warnings():  # all CVs (or LBs) equal: no ranking, rho is NaN
                warnings.simplefilter("ignore")
                result = stats.spearmanr(group["cv"], group["lb"])
            rho, p_value = float(result.statistic), float(result.pvalue)
        gaps = group["gap"].to_numpy()
        flagged = group[group["out_of_line"]]
        rows.append(
            {
                "board": board,
                "submissions": len(group),
                "spearman": rho,
                "p_value": p_value,
                "median_gap": float(np.median(gaps)),
                "mad": float(np.median(np.abs(gaps - np.median(gaps)))),
                "out_of_line": ", ".join(dict.fromkeys(flagged["run"])),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def describe_board(summary_row, table: pd.DataFrame) -> str:
    """One line per board for the notebook: the correlation, the typical gap and the runs out of line."""
    s = summary_row
    head = f"board {s.board}: {s.submissions} submission(s)"
    if s.submissions < MIN_SUBMISSIONS:
        return f"{head}; at least {MIN_SUBMISSIONS} are needed for a rank correlation and out-of-line gaps"
    rho = "undefined (all CVs or all LBs equal)" if math.isnan(s.spearman) else f"{s.spearman:+.3f}"
    line = f"{head}, Spearman rho(CV, LB) {rho}, median gap LB - CV {s.median_gap:+.5f} (MAD {s.mad:.5f})"
    flagged = table[(table["board"] == s.board) & table["out_of_line"]]
    if flagged.empty:
        return line + f"; no gap farther than {GAP_MADS:g} MAD from the median"
    parts = [f"{r.run} ({r.kind}, gap {r.gap:+.5f}, {r.gap_mads:.1f} MAD)" for r in flagged.itertuples()]
    return line + f"; out of line (gap > {GAP_MADS:g} MAD from the median): " + ", ".join(parts)

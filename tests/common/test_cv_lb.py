"""CV against the public LB: the rank correlation per board, the 2-MAD rule for out-of-line gaps, and the
notebook's section on fake runs with fake public scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from common import comparison
from common.cv_lb import cv_lb_summary, cv_lb_table
from common.runs import open_studies
from tests.common.fake_runs import FAKE_GAPS, make_fake_runs, score_fake_submissions


def _scores(cv, lb, board="a", runs=None) -> pd.DataFrame:
    n = len(cv)
    runs = runs or [f"runs/c/r{i}" for i in range(n)]
    return pd.DataFrame(
        {"time": "", "file": [f"s{i}.csv" for i in range(n)], "hash": [f"h{i}" for i in range(n)], "run": runs,
         "model": "m", "kind": "train", "cv": cv, "metric": "acc", "board": board, "score": lb}
    )  # fmt: skip


def test_a_gap_farther_than_two_mad_from_the_median_is_out_of_line():
    # in 1/1024ths, so every difference is exact: gaps median -10, deviations 0 1 1 2 40, MAD 1
    cv = np.array([800, 810, 820, 830, 840]) / 1024
    gaps = np.array([-10, -11, -9, -12, 30]) / 1024
    table = cv_lb_table(_scores(cv, cv + gaps))
    assert table["out_of_line"].tolist() == [False, False, False, False, True]
    assert table["gap_mads"].tolist() == [0.0, 1.0, 1.0, 2.0, 40.0]  # exactly 2 MAD is still in line
    summary = cv_lb_summary(table).iloc[0]
    assert summary["spearman"] == pytest.approx(stats.spearmanr(cv, cv + gaps).statistic)
    assert summary["median_gap"] == -10 / 1024 and summary["mad"] == 1 / 1024
    assert summary["out_of_line"] == "r4"


def test_boards_are_separate_and_small_boards_get_no_verdict():
    a = _scores([0.8, 0.81, 0.82], [0.79, 0.80, 0.90], board="a")
    b = _scores([0.8, 0.81], [0.7, 0.9], board="b").assign(hash=["x", "y"])
    table = cv_lb_table(pd.concat([a, b]))
    summary = cv_lb_summary(table).set_index("board")
    assert summary.loc["a", "submissions"] == 3 and summary.loc["a", "out_of_line"] == "r2"
    assert np.isnan(summary.loc["b", "spearman"]) and summary.loc["b", "out_of_line"] == ""
    assert not table.loc[table["board"] == "b", "out_of_line"].any()


def test_the_latest_score_of_a_resubmitted_file_counts_once():
    runs = ["runs/c/r0", "runs/c/r0", "runs/c/r2", "runs/c/r3"]  # the same file of one run, uploaded twice
    scores = _scores([0.8, 0.8, 0.9, 0.85], [0.7, 0.75, 0.88, 0.84], runs=runs).assign(
        hash=["h", "h", "i", "j"]
    )
    table = cv_lb_table(scores)
    assert len(table) == 3 and table.set_index("file").loc["s1.csv", "lb"] == pytest.approx(0.75)


def test_byte_identical_files_of_two_runs_are_two_points():
    scores = _scores([0.8, 0.81, 0.9], [0.7, 0.75, 0.88]).assign(
        hash=["h", "h", "i"], run=["r/a", "r/b", "r/c"]
    )
    assert sorted(cv_lb_table(scores)["run"]) == ["a", "b", "c"]


def test_notebook_section_on_fake_runs_with_fake_scores(tmp_path, capsys):
    fake = make_fake_runs(tmp_path)
    score_fake_submissions(fake, tmp_path / "submissions")
    (study,) = open_studies(
        fake["runs_root"], "tests.common.fake_runs:FakeNews", None, tmp_path / "submissions", tmp_path / "fig"
    )
    table = comparison.cv_lb_section(study)
    out = capsys.readouterr().out
    assert sorted(table["run"]) == sorted(FAKE_GAPS)
    assert table.set_index("run").loc["lstm", "out_of_line"] and table["out_of_line"].sum() == 1
    assert "board a: 3 submission(s), Spearman rho(CV, LB)" in out
    assert "out of line (gap > 2 MAD from the median): lstm (train, gap +0.05000" in out
    assert (tmp_path / "fig" / "fake_news-cv-vs-lb.png").stat().st_size > 5_000


def test_notebook_section_without_scores_says_how_to_record_one(tmp_path, capsys):
    fake = make_fake_runs(tmp_path)
    (study,) = open_studies(
        fake["runs_root"], "tests.common.fake_runs:FakeNews", None, tmp_path / "submissions"
    )
    assert comparison.cv_lb_section(study) is None
    assert "no public scores recorded yet (after an upload: make lb-score" in capsys.readouterr().out

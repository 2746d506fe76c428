"""Reading run directories back: completeness, scores, OOF, learning curves, contests by name."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from common.errors import UserError
from common.runs import (
    find_runs,
    fold_scores,
    learning_curves,
    load_competition,
    load_run,
    open_studies,
    parse_mapping,
)
from tests.common.fake_runs import FakeNews, make_fake_runs


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_runs(tmp_path_factory.mktemp("runs"))


def test_finds_runs_per_competition_and_tells_complete_from_incomplete(fake):
    runs = {r.name: r for r in find_runs(fake["runs_root"], "fake_news")}
    assert set(runs) == {"linear", "textcnn", "lstm", "partial"}  # folds/ has no config.yaml: not a run
    assert runs["linear"].complete and runs["linear"].n_folds == 3 and len(runs["linear"].fold_scores) == 3
    partial = runs["partial"]
    assert not partial.complete and math.isnan(partial.score) and len(partial.fold_scores) == 1
    assert {r.competition for r in find_runs(fake["runs_root"])} == {"fake_news", "fake_street"}
    assert find_runs(fake["runs_root"] / "missing") == []


def test_a_folder_with_another_config_is_not_a_run(tmp_path):
    fake = make_fake_runs(tmp_path)
    pretrained = fake["runs_root"] / "fake_news" / "pretrained-mini"
    pretrained.mkdir()
    (pretrained / "config.yaml").write_text("size: mini\nsteps: 100\n")
    assert "pretrained-mini" not in {r.name for r in find_runs(fake["runs_root"], "fake_news")}


def test_a_fold_rerun_after_merging_makes_the_run_incomplete(tmp_path):
    fake = make_fake_runs(tmp_path)
    run_dir = fake["news"]["runs"]["lstm"]
    (run_dir / "fold1" / "metrics.json").unlink()
    run = load_run(run_dir)
    assert run.cv is not None and not run.complete and math.isnan(run.score)


def test_oof_and_fold_scores(fake):
    run = load_run(fake["news"]["runs"]["lstm"])
    oof, ids = run.oof()
    assert oof.shape == (300, 4) and (ids == fake["news"]["ids"]).all()
    assert run.test().shape == (40, 4)
    table = fold_scores(find_runs(fake["runs_root"], "fake_news"))
    assert len(table) == 3 * 3 + 1 and set(table.columns) >= {"run", "fold", "score", "complete"}
    with pytest.raises(UserError, match="not merged"):
        load_run(fake["news"]["runs"]["partial"]).oof()


def test_learning_curves_count_each_epoch_once(tmp_path):
    fake = make_fake_runs(tmp_path)
    log = fake["news"]["runs"]["textcnn"] / "fold0" / "log.jsonl"
    last = log.read_text().splitlines()[-1]
    log.write_text(log.read_text() + last + "\n" + '{"epoch": 9, "train_')  # a resumed epoch and a cut line
    curves = learning_curves(find_runs(fake["runs_root"], "fake_news"))
    assert set(curves["run"]) == {"textcnn"}
    assert len(curves) == 3 * 3 and not curves.duplicated(["fold", "epoch"]).any()
    assert {"train_loss", "valid_loss", "valid_score"} <= set(curves.columns)


def test_load_competition_by_name_or_spec():
    assert isinstance(load_competition("tests.common.fake_runs:FakeNews"), FakeNews)
    with pytest.raises(UserError, match="unknown competition"):
        load_competition("no_such_contest")
    with pytest.raises(UserError, match="cannot load"):
        load_competition("tests.common.fake_runs:Nope")


def test_studies_labels_best_run_and_missing_competitions(fake, capsys):
    studies = open_studies(
        fake["runs_root"], "tests.common.fake_runs:FakeNews,no_such_contest,tests.common.toy:ToyCompetition"
    )
    assert [s.name for s in studies] == ["fake_news", "toy"]
    assert "no_such_contest: skipped" in capsys.readouterr().out
    news, toy = studies
    assert toy.empty and toy.best_run() is None
    scores = {r.name: r.score for r in news.complete_runs()}
    assert news.best_run().name == max(scores, key=scores.get)
    ids = fake["news"]["ids"][[5, 0, 7]]
    assert (news.labels_for(ids) == fake["news"]["y"][[5, 0, 7]]).all()
    assert news.labels_for(np.array(["nope"])) is None


def test_parse_mapping():
    assert parse_mapping("a=x, b = y") == {"a": "x", "b": "y"}
    assert parse_mapping("") == {}
    with pytest.raises(UserError, match="name=value"):
        parse_mapping("a")


def test_bad_config_is_a_user_error(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("[1, 2")
    with pytest.raises(UserError, match="config.yaml"):
        load_run(tmp_path / "r")
    (tmp_path / "r" / "config.yaml").write_text("model: x\n")
    with pytest.raises(UserError, match="older version of this repository"):
        load_run(tmp_path / "r")
    (tmp_path / "r" / "run.json").write_text('{"schema": 2}')
    (tmp_path / "r" / "cv.json").write_text("{")
    with pytest.raises(UserError, match="cv.json"):
        load_run(tmp_path / "r").cv  # noqa: B018


def test_find_runs_keeps_damaged_runs_as_broken_with_the_reason(tmp_path):
    from common.store import BrokenRun
    from common.store import find_runs as find_all

    fake = make_fake_runs(tmp_path)
    (fake["news"]["runs"]["lstm"] / "fold2" / "metrics.json").write_text("{")
    found = find_all(fake["runs_root"], "fake_news")
    broken = [r for r in found if isinstance(r, BrokenRun)]
    assert [r.name for r in broken] == ["lstm"] and "fold2/metrics.json: not valid JSON" in broken[0].reason
    assert {r.name for r in found} == {"linear", "textcnn", "lstm", "partial"}


def test_learning_curve_plot_of_runs_without_an_inner_holdout_says_so():
    """Runs trained on every row (valid_size=0) log only their train loss: the score panel is a note, not empty."""
    from common import plots

    curves = pd.DataFrame(
        {"run": ["a"] * 3 + ["b"] * 3, "fold": 0, "epoch": [0, 1, 2] * 2, "train_loss": [3.0, 2, 1, 4, 3, 2]}
    )
    curves["valid_score"] = curves["valid_loss"] = np.nan
    score, loss = plots.learning_curves(curves).axes
    assert not score.lines and [t.get_text() for t in score.texts] == [plots.NO_HOLDOUT]
    assert [line.get_label() for line in loss.lines] == ["a train", "b train"]
    curves.loc[curves["run"] == "a", "valid_score"] = [0.1, 0.2, 0.3]
    score, _ = plots.learning_curves(curves).axes
    assert not score.texts and "a" in [line.get_label() for line in score.lines]

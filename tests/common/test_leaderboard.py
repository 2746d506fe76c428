"""The leaderboard: complete runs ranked by CV score in the metric's direction, incomplete runs listed apart."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from common.leaderboard import format_leaderboard, leaderboard, leaderboard_cli, main
from tests.common.fake_runs import make_fake_runs


def cv_score(run) -> float:
    return json.loads((run / "cv.json").read_text())["score"]


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_runs(tmp_path_factory.mktemp("lb"))


def test_ranks_complete_runs_by_score_and_lists_incomplete_ones_last(fake):
    frame = leaderboard(fake["runs_root"], "fake_news")
    scores = {m: cv_score(fake["news"]["runs"][m]) for m in ("linear", "textcnn", "lstm")}
    assert list(frame["run"].iloc[:3]) == sorted(scores, key=scores.get, reverse=True)
    assert list(frame["rank"].iloc[:3]) == [1, 2, 3]
    assert frame["cv_score"].iloc[:3].is_monotonic_decreasing
    partial = frame.set_index("run").loc["partial"]
    assert partial["status"] == "incomplete" and not partial["complete"]
    assert math.isnan(partial["cv_score"]) and pd.isna(partial["rank"])
    assert partial["folds_done"] == "1/3" and len(partial["fold_scores"].split()) == 1
    assert frame["run"].iloc[-1] == "partial"


def test_row_holds_fold_spread_seconds_params_and_submission(fake, tmp_path):
    runs = fake["news"]["runs"]
    (runs["linear"] / "submission.csv").write_text("label\n0\n")
    row = leaderboard(fake["runs_root"], "fake_news").set_index("run").loc["linear"]
    cv = json.loads((runs["linear"] / "cv.json").read_text())
    assert row["cv_score"] == pytest.approx(cv["score"])
    assert row["fold_std"] == pytest.approx(pd.Series(cv["fold_scores"]).std(ddof=0))
    assert row["folds_done"] == "3/3" and row["seconds"] == pytest.approx(4.5)
    assert row["key_params"] == "lr=0.1"  # the param that differs from the other `linear` run
    assert row["submission"].endswith("linear/submission.csv")


def test_lower_is_better_metric_sorts_ascending(tmp_path):
    fake = make_fake_runs(tmp_path)
    for run in fake["news"]["runs"].values():
        for path in [*run.glob("cv.json"), *run.glob("fold*/metrics.json")]:
            path.write_text(json.dumps({**json.loads(path.read_text()), "metric": "log_loss"}))
    frame = leaderboard(fake["runs_root"], "fake_news")
    scores = {m: cv_score(fake["news"]["runs"][m]) for m in ("linear", "textcnn", "lstm")}
    assert list(frame["run"].iloc[:3]) == sorted(scores, key=scores.get)
    assert frame["run"].iloc[-1] == "partial"


def test_all_competitions_grouped_and_cli_writes_csv(fake, tmp_path, capsys):
    out = tmp_path / "lb.csv"
    frame = leaderboard_cli(fake["runs_root"], None, out)
    assert set(frame["competition"]) == {"fake_news", "fake_street"}
    assert list(frame["competition"]) == sorted(frame["competition"])
    printed = capsys.readouterr().out
    assert "== fake_news ==" in printed and "incomplete" in printed and "cv string_accuracy" in printed
    assert pd.read_csv(out)["run"].tolist() == frame["run"].tolist()
    assert main(["--runs-root", str(fake["runs_root"]), "--competition", "fake_street"]) == 0
    assert (fake["runs_root"] / "fake_street" / "leaderboard.csv").is_file()


def test_no_runs_is_an_empty_table(tmp_path):
    frame = leaderboard(tmp_path / "nothing")
    assert frame.empty
    assert format_leaderboard(frame) == "no runs found"


def test_a_damaged_run_is_listed_as_broken_and_the_others_still_rank(tmp_path, capsys):
    fake = make_fake_runs(tmp_path)
    runs = fake["news"]["runs"]
    (runs["textcnn"] / "cv.json").write_text("{not json")
    (runs["lstm"] / "config.yaml").write_text("model: [\n")
    frame = leaderboard(fake["runs_root"], "fake_news").set_index("run")
    assert (
        frame.loc["textcnn", "status"].startswith("broken: ") and "cv.json" in frame.loc["textcnn", "status"]
    )
    assert frame.loc["lstm", "status"].startswith("broken: ") and "config.yaml" in frame.loc["lstm", "status"]
    assert frame.loc["linear", "rank"] == 1 and frame.loc["partial", "status"] == "incomplete"
    assert main(["--runs-root", str(fake["runs_root"])]) == 0
    assert "broken: " in capsys.readouterr().out


def test_commit_and_changed_data_are_shown(tmp_path):
    fake = make_fake_runs(tmp_path)
    row = leaderboard(fake["runs_root"], "fake_news").set_index("run").loc["linear"]
    assert row["status"] == "complete" and len(row["commit"]) >= 8
    train_csv = fake["news"]["data_dir"] / "train.csv"
    train_csv.write_text(train_csv.read_text().replace("n0000,", "n0000,", 1) + "\n")
    row = leaderboard(fake["runs_root"], "fake_news").set_index("run").loc["linear"]
    assert row["status"] == "complete, data changed"


def _rewrite(path, change) -> None:
    data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    change(data)
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data))


@pytest.mark.parametrize(
    "file, change, says",
    [
        ("fold1/metrics.json", lambda d: d.pop("score"), "expected a number as 'score', found none"),
        ("fold0/metrics.json", lambda d: d.update(seconds="slow"), "'seconds'"),
        ("cv.json", lambda d: d.update(score="0.9"), "expected a number as 'score', got \"0.9\""),
        ("cv.json", lambda d: d.update(fold_scores=[0.5, None, 0.6]), "'fold_scores[1]'"),
        ("run.json", lambda d: d.update(inputs=["train.csv"]), "expected an object of input fingerprints"),
        ("run.json", lambda d: d["inputs"].update(train="train.csv"), "'inputs.train'"),
        ("run.json", lambda d: d.update(git={"commit": 7}), "'git.commit'"),
    ],
    ids=["no-fold-score", "text-seconds", "text-cv-score", "null-fold-score", "inputs-list", "inputs-train-str",
         "commit-int"],
)  # fmt: skip
def test_a_run_file_damaged_but_still_json_is_listed_as_broken_naming_it(
    tmp_path, capsys, file, change, says
):
    fake = make_fake_runs(tmp_path)
    run = fake["news"]["runs"]["textcnn"]
    _rewrite(run / file, change)
    frame = leaderboard(fake["runs_root"]).set_index("run")
    status = frame.loc["textcnn", "status"]
    assert status.startswith(f"broken: {run / file}: ") and says in status, status
    assert frame.loc["linear", "rank"] == 1 and frame.loc["lstm", "rank"] == 2
    assert frame.loc["partial", "status"] == "incomplete" and {"cnn", "resnet"} <= set(frame.index)
    assert main(["--runs-root", str(fake["runs_root"])]) == 0
    out = capsys.readouterr().out
    assert "broken: " in out and "lstm" in out


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda d: d.update(n_folds="three"), "ValueError"),
        (lambda d: d.update(params=["lr", 0.1]), "AttributeError"),
        (lambda d: d.update(pseudo={"rows": [3]}), "AttributeError"),
    ],
    ids=["n-folds-text", "params-list", "pseudo-rows-list"],
)
def test_any_other_damage_to_one_run_lists_it_as_broken_and_the_others_still_rank(tmp_path, change, says):
    fake = make_fake_runs(tmp_path)
    _rewrite(fake["news"]["runs"]["textcnn"] / "config.yaml", change)
    frame = leaderboard(fake["runs_root"], "fake_news").set_index("run")
    status = frame.loc["textcnn", "status"]
    assert status.startswith("broken: cannot be read (") and says in status and "\n" not in status, status
    assert frame.loc["linear", "rank"] == 1 and frame.loc["lstm", "rank"] == 2
    assert frame.loc["linear", "key_params"] == "lr=0.1"
    assert main(["--runs-root", str(fake["runs_root"])]) == 0


def test_the_refit_folder_needs_no_score(tmp_path):
    from common.store import RunStore

    fake = make_fake_runs(tmp_path)
    store = RunStore(fake["news"]["runs"]["linear"])
    store.save_fold("full", None, {}, {"fold": "full", "seconds": 2.0, "n_train": 300})
    assert store.read_fold_metrics("full")["seconds"] == 2.0
    assert leaderboard(fake["runs_root"], "fake_news").set_index("run").loc["linear", "rank"] == 1

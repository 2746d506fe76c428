"""The submission ledger: every submission the repository writes is recorded with its content hash; ``lb-score``
records the public score of such a file and refuses any other; the leaderboard shows the latest score per run."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest

from common.errors import UserError
from common.leaderboard import format_leaderboard, leaderboard
from common.ledger import Ledger, Origin, content_hash
from common.store import Run
from tests.common.fake_runs import FakeNews, make_fake_runs


def _train(cli, run_dir, *extra):
    argv = ["train", "--model", "toy_logreg", "--data-dir", cli.data, "--run-dir", run_dir, "--folds", 3]
    return cli(*argv, "--quiet", *extra)


def test_every_submission_written_is_recorded_with_its_hash_run_and_cv(cli, tmp_path):
    assert _train(cli, "runs/toy/a")[0] == 0
    assert _train(cli, "runs/toy/b", "--set", "C=0.01")[0] == 0
    assert _train(cli, "runs/toy/a", "--fold", "full")[0] == 0
    code, _, err = cli("predict", "--run-dir", "runs/toy/a", "--data-dir", cli.data, "--out", "b.csv")
    assert code == 0, err
    code, _, err = cli(
        "blend", "--runs", "runs/toy/a", "runs/toy/b", "--data-dir", cli.data, "--out", "runs/toy/ab"
    )
    assert code == 0, err
    index = Ledger("submissions", "toy").written()
    assert set(index["kind"]) == {"train", "full", "predict", "blend"}
    for row in index.itertuples(index=False):
        assert row.hash == content_hash(tmp_path / row.file)  # the file as written
    by_file = index.set_index("file")
    cv_a = Run(tmp_path / "runs/toy/a").score
    assert by_file.loc["runs/toy/a/submission.csv", "cv"] == pytest.approx(cv_a)
    assert by_file.loc["b.csv", "kind"] == "predict" and by_file.loc["b.csv", "run"] == "runs/toy/a"
    assert by_file.loc["runs/toy/a/submission-full.csv", "kind"] == "full"
    archived = index[(index["run"] == "runs/toy/ab") & index["file"].str.startswith("submissions/")]
    assert len(archived) == 1 and archived["model"].iat[0] == "blend"


def test_lb_score_records_a_written_file_by_its_content(cli, tmp_path):
    assert _train(cli, "runs/toy/a")[0] == 0
    archived = next((tmp_path / "submissions/toy").glob("toy_logreg-cv*.csv"))
    shutil.copy(archived, tmp_path / "uploaded-as-this.csv")  # renamed before upload: still recognised
    code, out, err = cli("lb-score", "--sub", "uploaded-as-this.csv", "--score", "0.8123", "--board", "b")
    assert code == 0, err
    assert "board b 0.81230" in out[0] and "runs/toy/a" in out[0]
    scores = Ledger("submissions", "toy").scores()
    assert len(scores) == 1
    row = scores.iloc[0]
    assert row["run"] == "runs/toy/a" and row["board"] == "b" and row["score"] == pytest.approx(0.8123)
    assert row["cv"] == pytest.approx(Run(tmp_path / "runs/toy/a").score) and row["kind"] == "train"
    assert row["hash"] == content_hash(archived)


def test_lb_score_refuses_a_file_the_repository_did_not_write(cli, tmp_path):
    assert _train(cli, "runs/toy/a")[0] == 0
    own = tmp_path / "runs/toy/a/submission.csv"
    edited = pd.read_csv(own)
    edited.loc[0, "label"] = (edited.loc[0, "label"] + 1) % 3  # hand-edited: another file
    edited.to_csv(tmp_path / "edited.csv", index=False)
    for sub in ("edited.csv", "missing.csv"):
        code, out, err = cli("lb-score", "--sub", sub, "--score", "0.9")
        assert code == 2 and out == []
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert "was not written by this repository" in cli("lb-score", "--sub", "edited.csv", "--score", "0.9")[2]
    assert cli("lb-score", "--sub", "runs/toy/a/submission.csv", "--score", "nan")[0] == 2
    assert not (tmp_path / "submissions/toy/scores.csv").exists()


def test_a_file_of_another_competition_is_named(tmp_path):
    sub = tmp_path / "sub.csv"
    sub.write_text("label\n1\n")
    other = Ledger(tmp_path, "street")
    other.record_written(sub, Origin(tmp_path, "street", "train", "runs/street/cnn", "cnn", 0.5, "acc"))
    with pytest.raises(UserError, match=r"is a submission of street, not news \(COMP=street\)"):
        Ledger(tmp_path, "news").record_score(sub, 0.5)


def test_byte_identical_files_of_two_runs_score_the_run_whose_file_is_named(tmp_path):
    """Two runs often write the same labels (a run and its pseudo run, k-fold and full): the named file decides."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.csv").write_text("label\n1\n")
    ledger = Ledger(tmp_path, "news")
    for name in ("a", "b"):
        origin = Origin(tmp_path, "news", "train", f"runs/news/{name}", "tfidf", 0.5, "f1")
        ledger.record_written(tmp_path / f"{name}.csv", origin)
    assert ledger.record_score(tmp_path / "a.csv", 0.5)["run"] == "runs/news/a"
    assert ledger.record_score(tmp_path / "b.csv", 0.5)["run"] == "runs/news/b"


@pytest.fixture
def scored(tmp_path, monkeypatch):
    """Fake runs with archived submissions (written through the store) and public scores for some."""
    monkeypatch.chdir(tmp_path)
    fake = make_fake_runs(tmp_path)
    news = FakeNews()
    test = news.load_test(fake["news"]["data_dir"])
    files = {}
    for name in ("linear", "textcnn", "lstm"):
        run = Run(fake["news"]["runs"][name])
        files[name] = run.write_submission(news, test, run.test(), archive_root=tmp_path / "submissions")[1]
    ledger = Ledger(tmp_path / "submissions", "fake_news")
    ledger.record_score(files["linear"], 0.61, "a")
    ledger.record_score(files["linear"], 0.63, "b")  # the latest score of the run, whatever its board
    ledger.record_score(files["lstm"], 0.55, "a")
    return fake, ledger


def test_leaderboard_shows_the_latest_public_score_beside_the_cv(scored, tmp_path):
    fake, _ = scored
    board = leaderboard(fake["runs_root"], "fake_news", tmp_path / "submissions").set_index("run")
    assert board.loc["linear", "lb_score"] == pytest.approx(0.63) and board.loc["linear", "lb_board"] == "b"
    assert board.loc["lstm", "lb_score"] == pytest.approx(0.55) and board.loc["lstm", "lb_note"] == ""
    assert math.isnan(board.loc["textcnn", "lb_score"]) and board.loc["textcnn", "lb_board"] == ""
    assert board.loc["linear", "submission"].startswith(str(tmp_path / "submissions" / "fake_news"))
    text = format_leaderboard(board.reset_index())
    header = text.splitlines()[1].split()
    assert header[header.index("macro_f1") + 1] == "lb"  # the column right after the CV
    assert "0.63000 (b)" in text and "0.55000 (a)" in text


def test_a_score_of_an_earlier_version_of_the_run_says_so(scored, tmp_path):
    fake, _ = scored
    cv_path = fake["news"]["runs"]["lstm"] / "cv.json"
    cv = json.loads(cv_path.read_text())
    cv["score"] += 0.01  # retrained since the upload
    cv_path.write_text(json.dumps(cv))
    board = leaderboard(fake["runs_root"], "fake_news", tmp_path / "submissions").set_index("run")
    assert board.loc["lstm", "lb_note"].startswith("earlier version, CV then")


def test_no_scores_no_lb_column(tmp_path):
    fake = make_fake_runs(tmp_path)
    text = format_leaderboard(leaderboard(fake["runs_root"], "fake_news", tmp_path / "submissions"))
    assert " lb " not in text.splitlines()[1]

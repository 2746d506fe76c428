"""Blending: weights on the simplex, never worse than the best member on OOF, refusals on mismatched runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from common.blend import _same_folds, apply_class_weights, blend, fit_class_weights, fit_weights
from common.errors import UserError
from common.leaderboard import leaderboard
from common.metrics import macro_f1
from common.store import Run
from tests.common.fake_runs import FakeNews, make_fake_runs, noisy_news_proba


@pytest.fixture
def fake(tmp_path):
    return make_fake_runs(tmp_path)


def f1(y, p):
    return macro_f1(y, p.argmax(1))


def test_fit_weights_on_simplex_and_at_least_best_member():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    members = [noisy_news_proba(y, s, rng) for s in (0.8, 1.0, 1.2)]
    w, score = fit_weights(members, y, f1, max_evals=120)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert score >= max(f1(y, p) for p in members)
    assert score == pytest.approx(f1(y, np.tensordot(w, np.stack(members), axes=1)))


def test_fit_weights_ignores_a_useless_member():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 300)
    good = np.eye(4, dtype=np.float32)[y]
    junk = np.eye(4, dtype=np.float32)[(y + 1) % 4]
    w, score = fit_weights([junk, good], y, f1, max_evals=30)
    assert score == 1.0 and w[1] > w[0]


def test_class_weights_never_lower_in_sample_score():
    rng = np.random.default_rng(3)
    y = rng.choice(4, size=500, p=[0.6, 0.25, 0.1, 0.05])
    proba = noisy_news_proba(y, 1.4, rng) * np.array([2.0, 1, 1, 0.5], dtype=np.float32)
    proba /= proba.sum(1, keepdims=True)
    cw, score = fit_class_weights(proba, y, f1)
    assert cw.shape == (4,) and (cw > 0).all()
    assert score >= f1(y, proba)
    assert score == pytest.approx(f1(y, apply_class_weights(proba, cw)))
    assert np.allclose(apply_class_weights(proba, cw).sum(1), 1.0, atol=1e-5)


def test_blend_writes_a_run_the_leaderboard_shows(fake, tmp_path):
    news = fake["news"]
    runs = [news["runs"][m] for m in ("linear", "textcnn", "lstm")]
    out = fake["runs_root"] / "fake_news" / "blend"
    result = blend(runs, FakeNews(), news["data_dir"], out, submissions_dir=tmp_path / "subs", max_evals=60)
    assert (result.weights >= 0).all() and result.weights.sum() == pytest.approx(1.0)
    assert result.score >= max(result.member_scores)
    cv = json.loads((out / "cv.json").read_text())
    assert cv["score"] == pytest.approx(result.score) and cv["model"] == "blend"
    assert sum(cv["weights"].values()) == pytest.approx(1.0)
    assert 0.0 <= cv["score_crossfit"] <= 1.0 and len(cv["fold_scores"]) == 3
    oof, ids = np.load(out / "oof.npy"), np.load(out / "oof_ids.npy")
    assert oof.shape == (len(news["y"]), 4) and (ids == news["ids"]).all()
    assert f1(news["y"], oof) == pytest.approx(result.score)
    tests = np.stack([np.load(r / "test.npy") for r in runs])
    assert np.allclose(np.load(out / "test.npy"), np.tensordot(result.weights, tests, axes=1), atol=1e-6)
    assert len(pd.read_csv(out / "submission.csv")) == 40
    assert len(list((tmp_path / "subs" / "fake_news").glob("blend-cv*.csv"))) == 1
    board = leaderboard(fake["runs_root"], "fake_news").set_index("run")
    assert board.loc["blend", "status"] == "complete" and board.loc["blend", "rank"] == 1


def test_blend_with_class_weights_reports_both_scores(fake, tmp_path):
    news = fake["news"]
    runs = [news["runs"]["linear"], news["runs"]["lstm"]]
    result = blend(runs, FakeNews(), news["data_dir"], tmp_path / "b", class_weights=True, max_evals=30,
                   submissions_dir=None)  # fmt: skip
    assert result.class_weights is not None and result.score >= result.score_weights_only
    cv = json.loads((tmp_path / "b" / "cv.json").read_text())
    assert cv["class_weights"] is not None and "score_crossfit" in cv and "optimistic" in cv["note"]
    assert "cross-fitted" in result.summary()


def test_refuses_runs_on_other_folds(fake):
    news = fake["news"]
    other = fake["runs_root"] / "fake_news" / "other"
    shutil.copytree(news["runs"]["lstm"], other)
    folds_file = other / "folds.csv"
    frame = pd.read_csv(news["runs"]["lstm"].parent / "folds" / "folds-k3.csv", dtype={"id": str})
    frame["fold"] = np.roll(frame["fold"].to_numpy(), 1)
    frame.to_csv(folds_file, index=False)
    config = (other / "config.yaml").read_text().replace(str(news["runs"]["lstm"].parent / "folds" / "folds-k3.csv"),
                                                         str(folds_file))  # fmt: skip
    (other / "config.yaml").write_text(config)
    with pytest.raises(UserError, match="same folds file"):
        blend([news["runs"]["linear"], other], FakeNews(), news["data_dir"], other.parent / "b")


def test_refuses_other_rows_incomplete_runs_and_other_contests(fake):
    news, street = fake["news"], fake["street"]
    runs = news["runs"]
    shifted = runs["lstm"].parent / "shifted"
    shutil.copytree(runs["lstm"], shifted)
    ids = np.load(shifted / "oof_ids.npy")
    np.save(shifted / "oof_ids.npy", ids[::-1])
    with pytest.raises(UserError, match="other rows"):
        blend([runs["linear"], shifted], FakeNews(), news["data_dir"], shifted.parent / "b")
    with pytest.raises(UserError, match="incomplete"):
        blend([runs["linear"], runs["partial"]], FakeNews(), news["data_dir"], shifted.parent / "b")
    with pytest.raises(UserError, match="fake_street"):
        blend([runs["linear"], street["runs"]["cnn"]], FakeNews(), news["data_dir"], shifted.parent / "b")
    with pytest.raises(UserError, match="at least two"):
        blend([runs["linear"]], FakeNews(), news["data_dir"], shifted.parent / "b")
    with pytest.raises(UserError, match="one of the blended runs"):
        blend([runs["linear"], runs["lstm"]], FakeNews(), news["data_dir"], runs["lstm"])


def test_refuses_runs_made_from_other_data(fake, tmp_path):
    news = fake["news"]
    other_data = tmp_path / "other"
    other_data.mkdir()
    frame = pd.read_csv(news["data_dir"] / "train.csv", dtype={"id": str})
    frame["id"] = "x" + frame["id"]
    frame.to_csv(other_data / "train.csv", index=False)
    with pytest.raises(UserError, match="other data"):
        blend([news["runs"]["linear"], news["runs"]["lstm"]], FakeNews(), other_data, tmp_path / "b")


def test_blends_sequence_probabilities(fake, tmp_path):
    street = fake["street"]
    result = blend(list(street["runs"].values()), street["competition"], street["data_dir"], tmp_path / "b",
                   max_evals=40, submissions_dir=None)  # fmt: skip
    assert result.score >= max(result.member_scores)
    assert np.load(tmp_path / "b" / "oof.npy").shape == (120, 4, 11)
    assert list(pd.read_csv(tmp_path / "b" / "submission.csv").columns) == ["file_name", "file_code"]


def test_blend_verb_of_the_shared_cli(toy_dir, tmp_path, capsys):
    from tests.common.toy import main

    common = ["--data-dir", str(toy_dir), "--folds-dir", str(tmp_path / "folds"), "--folds", "3"]
    subs = ["--submissions-dir", str(tmp_path / "subs")]
    for run, c in (("a", "1.0"), ("b", "0.01")):
        args = ["train", "--model", "toy_logreg", "--run-dir", str(tmp_path / run), "--set", f"C={c}"]
        assert main([*args, *common, *subs]) == 0
    runs = [str(tmp_path / "a"), str(tmp_path / "b")]
    assert (
        main(["blend", "--data-dir", str(toy_dir), "--runs", *runs, "--out", str(tmp_path / "bl"), *subs])
        == 0
    )
    out = capsys.readouterr().out
    assert "cross-fitted" in out and out.strip().splitlines()[-1].startswith("CV accuracy:")
    assert (tmp_path / "bl" / "submission.csv").is_file()
    assert main(["blend", "--data-dir", str(toy_dir), "--runs", runs[0], "--out", str(tmp_path / "bl")]) == 2
    assert "at least two runs" in capsys.readouterr().err


def test_same_folds_compares_only_the_scored_rows(tmp_path):
    """Rows only ever trained on (fold -1: pseudo-labelled rows, an official split's training part) never enter
    the OOF: folds files that differ only there hold blendable runs."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame({"id": ["x", "y", "z"], "label": 0, "fold": [0, 1, -1]}).to_csv(a, index=False)
    pd.DataFrame({"id": ["x", "p", "y"], "label": 0, "fold": [0, -1, 1]}).to_csv(b, index=False)

    def run(folds_file):
        return Run(tmp_path, config={"model": "m", "folds_file": str(folds_file)})

    assert _same_folds(run(a), run(b))
    pd.DataFrame({"id": ["x", "y"], "label": 0, "fold": [1, 0]}).to_csv(b, index=False)
    assert not _same_folds(run(a), run(b))

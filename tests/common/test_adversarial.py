"""Adversarial validation through the toy contest: the verb's outputs, a shift it must find, the holdout that
``folds_from=adversarial`` makes from the scores, and the refusals (no scores, stale scores, a predefined split)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from common.adversarial import holdout_by_score, holdout_folds
from common.competition import DataConfig
from common.errors import UserError
from common.store import AdversarialStore
from tests.common.toy import FEATURES, ToyCompetition


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """Gradient boosting's OpenMP threads crawl on a shared 2-core machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _adversarial(cli, *extra):
    return cli("adversarial", "--data-dir", cli.data, "--folds", 3, *extra)


def _train(cli, run_dir, *extra):
    return cli(
        "train", "--model", "toy_logreg", "--data-dir", cli.data, "--run-dir", run_dir, "--folds", 3, *extra
    )


def test_verb_writes_scores_and_report(cli, tmp_path):
    code, out, err = _adversarial(cli, "--top", 4, "--rows", 5)
    assert code == 0, err
    text = "\n".join(out)
    assert (
        "AUC " in text
        and "features that separate them most" in text
        and "most test-like training rows" in text
    )
    folder = tmp_path / "runs/toy/adversarial"
    scores = pd.read_csv(folder / "scores.csv", dtype={"id": str})
    assert list(scores.columns) == ["id", "set", "fold", "score"]
    assert (scores["set"] == "train").sum() == 200 and (scores["set"] == "test").sum() == 50
    assert scores["fold"].between(0, 2).all() and scores["score"].between(0, 1).all()
    report = json.loads((folder / "report.json").read_text())
    assert (
        len(report["auc_folds"]) == 3 and len(report["features"]) == 4 and len(report["most_test_like"]) == 5
    )
    assert {f["feature"] for f in report["features"]} == set(FEATURES)
    assert "train.csv" in next(iter(report["inputs"]["train"])) and report["inputs"]["test"]
    # the toy's train and test rows come from one generator: nothing to find
    assert 0.3 < report["auc"] < 0.7 and report["verdict"].startswith("train and test look alike")
    ranked = sorted(report["most_test_like"], key=lambda r: -r["score"])
    assert report["most_test_like"] == ranked
    top_train = scores[scores["set"] == "train"].sort_values("score", ascending=False, kind="stable")
    assert report["most_test_like"][0]["id"] == top_train["id"].iat[0]


def test_a_shifted_column_is_found_and_named(cli, tmp_path):
    test = pd.read_csv(cli.data / "test.csv")
    test["f2"] += 10.0
    test.to_csv(cli.data / "test.csv", index=False)
    code, out, err = _adversarial(cli)
    assert code == 0, err
    report = json.loads((tmp_path / "runs/toy/adversarial/report.json").read_text())
    assert report["auc"] > 0.9 and report["verdict"].startswith("a strong shift")
    top = report["features"][0]
    assert top["feature"] == "f2" and top["more_in"] == "test" and top["auc_alone"] > 0.9


def test_holdout_takes_the_most_test_like_share_of_each_class():
    score = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4, 0.5, 0.05])
    strata = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    folds = holdout_by_score(score, strata, 0.4)
    assert folds.tolist() == [0, -1, 0, -1, -1, -1, 0, -1, 0, -1]
    # a stratum of two keeps one row for training; a stratum of one row is never validated on
    assert holdout_by_score(np.array([0.9, 0.1, 0.5]), np.array([0, 0, 1]), 0.9).tolist() == [0, -1, -1]
    # exact duplicates (one group) go to the holdout together
    groups = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 0])
    assert holdout_by_score(score, strata, 0.4, groups)[[0, 9]].tolist() == [0, 0]


def test_train_with_folds_from_adversarial(cli, tmp_path):
    assert _adversarial(cli)[0] == 0
    code, out, err = _train(cli, "runs/adv", "--set", "folds_from=adversarial", "--set", "holdout_share=0.25")
    assert code == 0, err
    assert any("one holdout fold of 50 rows" in line and "150 rows train-only" in line for line in out), out
    assert out[-1].startswith("CV accuracy: ")
    folds_file = yaml.safe_load((tmp_path / "runs/adv/config.yaml").read_text())["folds_file"]
    folds = pd.read_csv(tmp_path / folds_file, dtype={"id": str})
    scores = pd.read_csv(tmp_path / "runs/toy/adversarial/scores.csv", dtype={"id": str})
    merged = folds.merge(scores[scores["set"] == "train"], on="id")
    for _, rows in merged.groupby(
        "label"
    ):  # per class, every holdout row scores at least as high as the rest
        assert rows.loc[rows["fold_x"] == 0, "score"].min() >= rows.loc[rows["fold_x"] == -1, "score"].max()
    assert json.loads((tmp_path / "runs/adv/cv.json").read_text())["n_folds"] == 1
    # tuning resolves the same holdout
    code, out, err = cli("tune", "--model", "toy_logreg", "--data-dir", cli.data, "--trials", 1, "--storage",
                         tmp_path / "o.journal", "--set", "folds_from=adversarial", "--set", "holdout_share=0.25",
                         "--quiet")  # fmt: skip
    assert code == 0, err


def test_folds_from_adversarial_needs_fresh_scores(cli, tmp_path):
    code, _, err = _train(cli, "runs/adv", "--set", "folds_from=adversarial")
    assert code == 2 and "runs/toy/adversarial has none" in err and "make adversarial COMP=toy" in err
    assert not (tmp_path / "runs/adv").exists()
    assert _adversarial(cli)[0] == 0
    frame = pd.read_csv(cli.data / "train.csv")
    frame.loc[0, "f0"] += 1.0
    frame.to_csv(cli.data / "train.csv", index=False)
    code, _, err = _train(cli, "runs/adv", "--set", "folds_from=adversarial")
    assert code == 2 and "made from other data (train.csv differ)" in err, err
    # another test file than the one the scores were made against
    assert _adversarial(cli)[0] == 0
    (cli.data / "test_b.csv").write_text((cli.data / "test.csv").read_text())
    code, _, err = _train(cli, "runs/adv", "--set", "folds_from=adversarial", "--set", "test_file=test_b.csv")
    assert code == 2 and "test_b.csv" in err and "other data" in err


def test_folds_from_adversarial_refuses_a_predefined_split(toy_data):
    comp, data, test = toy_data
    data.folds = np.zeros(len(data.ids), dtype=np.int64)
    with pytest.raises(UserError, match="cannot be combined with the contest's predefined split"):
        holdout_folds(comp, data, test, DataConfig(folds_from="adversarial"))


def test_damaged_scores_are_named(tmp_path):
    store = AdversarialStore(tmp_path / "adv")
    store.write(pd.DataFrame({"id": ["a"], "set": ["train"], "fold": [0], "score": [0.5]}), {"auc": 0.5})
    (tmp_path / "adv" / "scores.csv").write_text("id,set\nx,y\n")
    with pytest.raises(UserError, match="scores.csv: expected columns id,set,fold,score"):
        store.read_scores()
    (tmp_path / "adv" / "report.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="not an adversarial validation report"):
        store.read_report()


def test_a_run_from_before_the_new_data_keys_still_resumes(cli, tmp_path):
    assert _train(cli, "runs/old")[0] == 0
    path = tmp_path / "runs/old/config.yaml"
    config = yaml.safe_load(path.read_text())
    config["data"] = {"test_file": None}  # what this repository wrote before folds_from existed
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    code, out, err = _train(cli, "runs/old")
    assert code == 0, err
    assert sum("already complete, skipped" in line for line in out) == 3


def test_comparison_section(cli, tmp_path, capsys):
    from common import comparison
    from common.runs import open_studies

    assert _adversarial(cli)[0] == 0
    (study,) = open_studies(tmp_path / "runs", [f"{ToyCompetition.__module__}:ToyCompetition"],
                            figures_dir=tmp_path / "figures")  # fmt: skip
    report = comparison.adversarial_section(study)
    assert report is not None and (tmp_path / "figures" / "toy-adversarial.png").stat().st_size > 5000
    assert "toy: adversarial AUC" in capsys.readouterr().out
    (study,) = open_studies(tmp_path / "elsewhere", [f"{ToyCompetition.__module__}:ToyCompetition"])
    assert comparison.adversarial_section(study) is None
    assert "no adversarial validation yet (make adversarial COMP=toy)" in capsys.readouterr().out


def test_a_duplicate_group_never_takes_a_whole_class_into_the_holdout():
    folds = holdout_by_score(
        np.array([0.9, 0.1, 0.5, 0.4]), np.array([0, 0, 1, 1]), 0.5, groups=np.array([0, 0, 1, 2])
    )
    for value in (0, 1):
        assert (folds[np.array([0, 0, 1, 1]) == value] == -1).any()
    assert (folds == 0).any()

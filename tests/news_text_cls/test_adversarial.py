"""Adversarial validation of the news contest: TF-IDF over id n-grams + length, a logistic regression. Demo train
and test documents come from one generator (AUC near 0.5); a test file with a replaced id or shorter documents
is found, and the feature named."""

from __future__ import annotations

import shutil

import pytest

from common import adversarial
from common.competition import DataConfig
from competitions.news_text_cls.competition import NewsCompetition


def _run(data_dir, out):
    return adversarial.run(
        NewsCompetition(), data_dir, DataConfig(), out, n_folds=4, top_features=5, top_rows=3
    )


def _with_test(demo_dir, tmp_path, change):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(demo_dir / "train_set.csv", data / "train_set.csv")
    header, *docs = (demo_dir / "test_a.csv").read_text().splitlines()
    (data / "test_a.csv").write_text("\n".join([header, *map(change, docs)]) + "\n")
    return data


def test_demo_train_and_test_look_alike(demo_dir, tmp_path):
    report = _run(demo_dir, tmp_path / "adv")
    assert 0.35 < report["auc"] < 0.65, report["auc_folds"]
    assert report["features_used"].startswith("TF-IDF of token 1-2-grams")
    assert len(report["most_test_like"]) == 3 and isinstance(report["most_test_like"][0]["label"], int)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda doc: " ".join("7600" if t == "3750" else t for t in doc.split(" ")), {"'3750'", "'7600'"}),
        (
            lambda doc: " ".join(doc.split(" ")[: max(8, len(doc.split(" ")) // 4)]),
            set(adversarial.TEXT_LENGTHS),
        ),
    ],
    ids=["an-id-replaced", "shorter-documents"],
)
def test_a_shifted_test_file_is_found_and_named(demo_dir, tmp_path, change, named):
    report = _run(_with_test(demo_dir, tmp_path, change), tmp_path / "adv")
    assert report["auc"] > 0.8 and report["verdict"].startswith("a strong shift")
    assert report["features"][0]["feature"] in named, report["features"]

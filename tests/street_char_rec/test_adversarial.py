"""Adversarial validation of the street contest: image statistics and gradient boosting. Demo images of every
split come from one generator (AUC near 0.5); brightened test images are found, and brightness named;
``folds_from=adversarial`` refuses ``split=official``."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image, ImageEnhance

from common import adversarial
from competitions.street_char_rec.cli import main
from competitions.street_char_rec.competition import StreetCompetition, StreetData
from competitions.street_char_rec.synth import write_dataset


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("street-adv") / "data", 120, 0, 60, seed=2, workers=1)["out"]


def _run(data_dir, out):
    return adversarial.run(
        StreetCompetition(), data_dir, StreetData(), out, n_folds=4, top_features=9, top_rows=3
    )


def test_demo_splits_look_alike(images, tmp_path):
    report = _run(images, tmp_path / "adv")
    assert 0.3 < report["auc"] < 0.7, report["auc_folds"]
    assert {f["feature"] for f in report["features"]} == set(adversarial.IMAGE_STATS)
    assert report["most_test_like"][0]["id"].startswith("mchar_train/")


def test_brighter_test_images_are_found_and_named(images, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(images, data, ignore=shutil.ignore_patterns(".cache"))
    for path in (data / "mchar_test_a").iterdir():
        with Image.open(path) as img:
            brighter = ImageEnhance.Brightness(img.convert("RGB")).enhance(1.5)
        brighter.save(path)
    report = _run(data, tmp_path / "adv")
    assert report["auc"] > 0.8
    top = report["features"][0]
    assert top["feature"] == "brightness" and top["more_in"] == "test", report["features"]


def test_folds_from_adversarial_refuses_the_official_split(street_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--model", "cnn", "--data-dir", str(street_data), "--set", "split=official",
                 "--set", "folds_from=adversarial"])  # fmt: skip
    err = capsys.readouterr().err
    assert (
        code == 2
        and "cannot be combined with the contest's predefined split (set by split='official')" in err
    )
    assert not (tmp_path / "runs").exists()

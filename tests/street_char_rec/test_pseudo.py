"""Pseudo-labelling on tiny street data: the whole-string confidence rule, the joined image set, and a cnn run
pseudo-labelled from its source on the same folds."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from competitions.street_char_rec.cli import main
from competitions.street_char_rec.competition import StreetCompetition
from competitions.street_char_rec.labels import BLANK, N_CLASSES

TINY_SET = ["img_h=16", "img_w=32", "epochs=1", "batch_size=16", "width=8"]


def test_confidence_is_the_probability_of_the_whole_decoded_string():
    proba = np.full((2, 3, N_CLASSES), 0.01)
    proba[0, 0, 1] = proba[0, 1, 2] = proba[0, 2, BLANK] = 0.9  # "12", then blank
    proba[1, :, 3] = 0.9  # "333"
    proba /= proba.sum(-1, keepdims=True)
    labels, confidence = StreetCompetition().pseudo_labels(proba, None)
    assert labels.tolist() == ["12", "333"]
    p = 0.9 / (0.9 + 10 * 0.01)
    assert confidence == pytest.approx([p**3, p**3])  # the blank after "12" counts, as in its training target


def test_cnn_pseudo_run_on_the_sources_folds(street_data, tmp_path, capsys):
    run, new = tmp_path / "run", tmp_path / "run-pseudo"
    argv = ["train", "--model", "cnn", "--data-dir", str(street_data), "--run-dir", str(run), "--folds", "2"]
    argv += ["--folds-dir", str(tmp_path / "folds"), "--submissions-dir", str(tmp_path / "subs"), "--quiet"]
    for item in TINY_SET:
        argv += ["--set", item]
    assert main(argv) == 0
    # a tiny one-epoch model is unsure of everything: a threshold near 0 takes every test image
    assert main(["pseudo", "--run-dir", str(run), "--threshold", "1e-12", "--quiet",
                 "--submissions-dir", str(tmp_path / "subs")]) == 0  # fmt: skip
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("CV string_accuracy: ")
    pseudo = yaml.safe_load((new / "config.yaml").read_text())["pseudo"]
    assert pseudo["rows"] == {"0": 12, "1": 12}
    for k in range(2):
        assert np.array_equal(np.load(new / f"fold{k}/oof_ids.npy"), np.load(run / f"fold{k}/oof_ids.npy"))
    assert list((street_data / ".cache").glob("labelled+mchar_test_a-16x32-*.npy"))  # one joined image cache

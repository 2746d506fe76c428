from __future__ import annotations

import numpy as np
import pytest

from competitions.news_text_cls.cli import main
from competitions.news_text_cls.data import read_test, read_train
from competitions.news_text_cls.synth import PUNCTUATION, class_priors, write_demo


def test_synth_cli_writes_the_contest_format(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--n-train", "300", "--n-test", "40", "--seed", "1"]) == 0
    lines = (tmp_path / "train_set.csv").read_text().splitlines()
    assert lines[0] == "label\ttext" and len(lines) == 301
    label, text = lines[1].split("\t")
    assert label.isdigit() and all(tok.isdigit() for tok in text.split(" "))
    test_lines = (tmp_path / "test_a.csv").read_text().splitlines()
    assert test_lines[0] == "text" and len(test_lines) == 41 and "\t" not in "".join(test_lines)
    corpus, labels = read_train(tmp_path / "train_set.csv")
    assert sorted(set(labels.tolist())) == list(range(14))
    assert len(read_test(tmp_path / "test_a.csv")) == 40


def test_synth_is_deterministic(tmp_path):
    a = write_demo(tmp_path / "a", 100, 10, seed=5)
    b = write_demo(tmp_path / "b", 100, 10, seed=5)
    c = write_demo(tmp_path / "c", 100, 10, seed=6)
    assert (a / "train_set.csv").read_bytes() == (b / "train_set.csv").read_bytes()
    assert (a / "train_set.csv").read_bytes() != (c / "train_set.csv").read_bytes()


def test_synth_statistics(tmp_path):
    write_demo(tmp_path, n_train=3000, n_test=0, seed=0)
    corpus, labels = read_train(tmp_path / "train_set.csv")
    lengths = corpus.lengths
    assert 550 < np.median(lengths) < 850 and 780 < lengths.mean() < 1050
    assert lengths.max() > 4 * np.median(lengths)  # a long tail
    freq = np.bincount(labels, minlength=14) / len(labels)
    assert np.abs(freq - class_priors()).max() < 0.03
    assert freq[0] > freq[13] * 10
    for pid in PUNCTUATION:
        share = np.mean([(corpus.doc(i) == pid).any() for i in range(len(corpus))])
        assert share > 0.95, (pid, share)
    assert corpus.flat.max() < 7550 and len(np.unique(corpus.flat)) > 3000
    assert not (tmp_path / "test_a.csv").exists()


@pytest.mark.slow
def test_bigrams_beat_unigrams(tmp_path):
    from sklearn.model_selection import cross_val_score

    from competitions.news_text_cls.models.tfidf import TfidfModel

    write_demo(tmp_path, n_train=2500, n_test=0, seed=0)
    corpus, labels = read_train(tmp_path / "train_set.csv")
    scores = {
        n: cross_val_score(
            TfidfModel(ngram_max=n, vocab_fit="fold"), corpus.texts, labels, cv=3, scoring="f1_macro"
        ).mean()
        for n in (1, 2)
    }
    assert scores[2] > scores[1] + 0.03, scores

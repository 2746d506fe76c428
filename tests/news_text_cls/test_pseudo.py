"""Pseudo-labelling on tiny news data: the joined corpus, and a tfidf run pseudo-labelled from its source with the
same folds, the same vocabulary and the pseudo rows trained on only."""

from __future__ import annotations

import numpy as np
import yaml

from competitions.news_text_cls.cli import main
from competitions.news_text_cls.competition import NewsCompetition
from competitions.news_text_cls.data import Corpus


def test_join_x_is_one_corpus_of_train_then_test_text():
    train = Corpus(["1 2", "3"], "train.csv", unlabelled=["4 5", "6"])
    test = Corpus(["4 5", "6"], "test.csv")
    joined = NewsCompetition().join_x(train, test)
    assert joined.texts.tolist() == ["1 2", "3", "4 5", "6"]
    assert len(joined.unlabelled_texts()) == 0  # the test text is in it once, not twice
    assert joined[np.array([0, 3])].texts.tolist() == ["1 2", "6"]


def test_tfidf_pseudo_run_keeps_folds_and_vocabulary(demo_dir, tmp_path, capsys):
    run, new = tmp_path / "runs/tfidf", tmp_path / "runs/tfidf-pseudo"
    common = ["--folds-dir", str(tmp_path / "folds"), "--submissions-dir", str(tmp_path / "subs")]
    argv = ["train", "--model", "tfidf", "--data-dir", str(demo_dir), "--run-dir", str(run), "--folds", "3"]
    argv += ["--set", "max_features=300"]
    assert main([*argv, *common]) == 0
    assert main(["pseudo", "--run-dir", str(run), "--threshold", "0.5", "--submissions-dir", common[-1]]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("CV macro_f1: ")
    pseudo = yaml.safe_load((new / "config.yaml").read_text())["pseudo"]
    assert pseudo["test_rows"] == 60 and all(0 < n <= 60 for n in pseudo["rows"].values())
    for k in range(3):
        assert np.array_equal(np.load(new / f"fold{k}/oof_ids.npy"), np.load(run / f"fold{k}/oof_ids.npy"))
    from common.store import RunStore

    vocab = [RunStore(p).load_model(0).pipeline_.named_steps["tfidf"].ngrams_ for p in (run, new)]
    assert np.array_equal(vocab[0], vocab[1])  # fitted on the same train + test text

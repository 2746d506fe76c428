from __future__ import annotations

import numpy as np
import pytest

from common.registry import create_model
from competitions.news_text_cls.data import Corpus
from competitions.news_text_cls.models.fasttext import NGramBatches, ngram_hashes


def test_ngram_hashes_skip_padding_and_are_order_sensitive():
    ids = np.array([[3, 4, 5, 0], [4, 3, 0, 0]])
    h = ngram_hashes(ids, 2, 1000)
    assert h.shape == (2, 3)
    assert (h[0, :2] >= 0).all() and h[0, 2] == -1  # (5, pad) is no bigram
    assert h[1, 1] == -1 and h[1, 2] == -1
    assert h[0, 0] != h[1, 0]  # (3, 4) and (4, 3) differ
    assert ngram_hashes(ids, 3, 1000).shape == (2, 2)
    assert ngram_hashes(np.array([[1]]), 2, 10).shape == (1, 0)


def test_batches_are_flat_bags_of_unigram_and_kept_bigram_rows():
    corpus = Corpus.from_ids([[1, 2, 3], [7]])
    kept = np.sort(ngram_hashes(np.array([[2, 3]]), 2, 50))  # only the bigram (1, 2) (indices 2, 3) is kept
    data = NGramBatches(corpus, np.array([0, 1]), max_len=8, head_ratio=0.5, vocab_size=10, ngram=2, buckets=50,
                        kept=kept.ravel())  # fmt: skip
    batch = data.__getitems__([0, 1])
    assert batch["input_ids"].tolist() == [
        2,
        3,
        4,
        10,
        8,
    ]  # unigrams id + 1, then row vocab_size + 0; doc 2: 8
    assert batch["offsets"].tolist() == [0, 4]
    assert batch["labels"].tolist() == [0, 1]


def test_fits_a_bigram_task_and_predicts_rows_in_order():
    # the same ids in both classes; only their order (the bigrams) tells the classes apart
    y = np.arange(200) % 2
    corpus = Corpus.from_ids([[1, 2, 3, 4] * 2 if label else [4, 3, 2, 1] * 2 for label in y])
    model = create_model("fasttext", epochs=20, lr=0.5, embed_dim=8, buckets=1000, valid_size=0.0, quiet=True)
    model.fit(corpus, y)
    assert (model.predict(corpus) == y).all()
    unigrams_only = create_model(
        "fasttext", ngram=1, epochs=20, lr=0.5, embed_dim=8, valid_size=0.0, quiet=True
    )
    assert (unigrams_only.fit(corpus, y).predict(corpus) == y).mean() < 0.9  # bags of unigrams cannot
    single = np.concatenate([model.predict_proba(corpus[np.array([i])]) for i in range(10)])
    np.testing.assert_allclose(model.predict_proba(corpus[np.arange(10)]), single, atol=1e-5)


def test_only_training_buckets_get_rows_so_the_model_stays_small(tmp_path):
    from common import persist

    corpus = Corpus.from_ids([[i, i + 1, i + 2] for i in range(50)])
    model = create_model("fasttext", epochs=1, embed_dim=4, valid_size=0.0, quiet=True)
    model.fit(corpus, np.arange(50) % 2)
    assert len(model.buckets_) == 51  # the bigrams (i, i + 1) for i = 0..50, out of 2M buckets
    assert model.module_.embed.weight.shape == (model.vocab_size_ + 51, 4)
    persist.save(model, tmp_path)
    assert sum(p.stat().st_size for p in persist.files(tmp_path)) < 100_000
    loaded = persist.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(corpus), model.predict_proba(corpus), atol=1e-6)


def test_word2vec_start_is_refused_when_the_config_is_built():
    from common.config import build_config
    from common.errors import UserError
    from common.registry import get_model_entry

    with pytest.raises(UserError, match="embedding_init"):
        build_config(get_model_entry("fasttext").config_cls, {"embedding_init": "word2vec"})


def test_more_than_one_process_is_refused_before_training(monkeypatch):
    from common.errors import UserError
    from common.registry import create_model
    from competitions.news_text_cls.models import fasttext

    monkeypatch.setattr(fasttext, "world_size", lambda: 2)
    with pytest.raises(UserError, match="one process"):
        create_model("fasttext").check_data(None, None)

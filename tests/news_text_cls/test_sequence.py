from __future__ import annotations

import numpy as np
import torch

from common.registry import create_model
from competitions.news_text_cls.data import Corpus
from competitions.news_text_cls.models.sequence import LengthBucketSampler, SequenceBatches, class_weights


def test_head_tail_truncation_and_dynamic_padding():
    corpus = Corpus.from_ids([list(range(10, 20)), [5, 6], []])
    data = SequenceBatches(corpus, np.array([0, 1, 0]), max_len=6, head_ratio=0.5, vocab_size=100)
    batch = data.__getitems__([0, 1, 2])
    # index = id + 1; first 3 and last 3 ids of the long document
    assert batch["input_ids"].tolist() == [[11, 12, 13, 18, 19, 20], [6, 7, 0, 0, 0, 0], [0] * 6]
    assert batch["lengths"].tolist() == [6, 2, 1]  # an empty document counts as one padding step
    assert batch["labels"].tolist() == [0, 1, 0]
    short = data.__getitems__([1])
    assert short["input_ids"].shape == (1, 2)  # padded to the batch's longest row only


def test_ids_above_the_vocabulary_map_to_the_unknown_index():
    data = SequenceBatches(Corpus.from_ids([[1, 500]]), None, max_len=8, head_ratio=1.0, vocab_size=10)
    assert data.__getitems__([0])["input_ids"].tolist() == [[2, 9]]
    assert "labels" not in data.__getitems__([0])


def test_min_len_pads_short_batches():
    data = SequenceBatches(Corpus.from_ids([[1]]), None, max_len=8, head_ratio=0.5, vocab_size=10, min_len=5)
    assert data.__getitems__([0])["input_ids"].shape == (1, 5)


def test_bucket_sampler_covers_rows_and_is_reproducible_per_epoch():
    lengths = np.random.default_rng(0).integers(1, 1000, size=103)
    sampler = LengthBucketSampler(lengths, batch_size=10, shuffle=True, seed=1, bucket_size=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 11
    assert sorted(i for b in first for i in b) == list(range(103))
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    # batches are length-homogeneous compared with random batches
    spread = np.mean([np.ptp(lengths[b]) for b in first])
    assert spread < 0.5 * np.ptp(lengths)


def test_eval_sampler_is_sorted_and_predictions_come_back_in_row_order():
    corpus = Corpus.from_ids([[1] * n for n in (3, 40, 7, 25, 1)] + [[2] * n for n in (30, 2, 9, 15, 4)])
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    model = create_model(
        "textcnn", epochs=30, batch_size=3, max_len=64, embed_dim=8, num_filters=4, lr=0.05, valid_size=0.0,
        quiet=True, kernel_sizes=[1, 2],
    )  # fmt: skip
    model.fit(corpus, y)
    assert (model.predict(corpus) == y).all()
    single = np.concatenate([model.predict_proba(corpus[np.array([i])]) for i in range(10)])
    np.testing.assert_allclose(model.predict_proba(corpus), single, atol=1e-5)


def test_class_weights():
    w = class_weights(np.array([0, 0, 0, 1]), 2, "balanced")
    assert w[1] > w[0] and torch.isclose((w[torch.tensor([0, 0, 0, 1])]).mean(), torch.tensor(1.0))
    assert class_weights(np.array([0, 1]), 2, None) is None


def test_word2vec_init_uses_text_only_and_is_cached_per_store():
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(1, 30, size=20)) for _ in range(60)]
    corpus = Corpus.from_ids(docs)
    y = np.arange(60) % 2
    # one step at a vanishing lr: the weights are the initial ones
    params = dict(max_steps=1, lr=1e-12, embed_dim=8, num_filters=4, kernel_sizes=[2], valid_size=0.0, quiet=True,
                  embedding_init="word2vec", w2v_epochs=2)  # fmt: skip
    a = create_model("textcnn", **params).fit(corpus, y)
    vectors = next(v for k, v in corpus.store.cache.items() if k[0] == "w2v")
    weight = a.module_.embed.weight.detach().numpy()
    for i in (1, 5, 29):
        np.testing.assert_allclose(weight[i + 1], vectors[i], rtol=1e-6)
    assert (weight[0] == 0).all()
    # other labels, same text: the same vectors (labels never reach word2vec), trained once for the store
    b = create_model("textcnn", **params).fit(corpus, 1 - y)
    np.testing.assert_array_equal(b.module_.embed.weight.detach().numpy()[2:31], weight[2:31])
    assert sum(k[0] == "w2v" for k in corpus.store.cache) == 1
    assert a.embedding_vectors_ is None  # not stored with the model

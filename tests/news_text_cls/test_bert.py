import json

import numpy as np
import pytest
import torch

from common import cv
from common.competition import TrainData
from common.errors import UserError
from common.registry import create_model
from common.store import RunStore
from competitions.news_text_cls import pretrain as pt
from competitions.news_text_cls import tokenizer as tok
from competitions.news_text_cls.competition import NewsCompetition
from competitions.news_text_cls.data import Corpus, read_train
from competitions.news_text_cls.models.bert import SegmentedDocs, collate_segments, segment_bounds
from competitions.news_text_cls.synth import write_demo
from tests.news_text_cls.test_pretrain import tiny_config

FAST = dict(epochs=1, batch_size=8, segment_len=64, lr=2e-3, valid_size=0.2, device="cpu", quiet=True)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    torch.set_num_threads(2)
    return write_demo(tmp_path_factory.mktemp("news"), n_train=60, n_test=20, seed=5, n_classes=3)


@pytest.fixture(scope="module")
def pretrained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    pt.pretrain(tiny_config(max_steps=5), data_dir, out)
    return out


# ------------------------------------------------------------------------------------------------ segments
def test_head_and_tail_of_a_3000_id_document():
    doc = np.arange(3000)
    bounds = segment_bounds(len(doc), n_segments=2, width=510)
    assert bounds == [(0, 510), (2490, 3000)]
    tokens = np.arange(3000, dtype=np.int32) + tok.N_SPECIAL
    data = SegmentedDocs(tokens, np.array([0]), np.array([3000]), None, n_segments=2, segment_len=512)
    batch = collate_segments([data[0]])
    ids = batch["input_ids"]
    assert ids.shape == (2, 512)
    assert ids[0, 1] == tokens[0] and ids[1, -2] == tokens[-1]  # first and last ids kept
    assert (ids[:, 0] == tok.CLS_ID).all() and (ids[:, -1] == tok.SEP_ID).all()


def test_segments_tile_a_document_that_fits_and_spread_over_a_long_one():
    assert segment_bounds(600, 2, 510) == [(0, 510), (510, 600)]
    assert segment_bounds(100, 2, 510) == [(0, 100)]
    assert segment_bounds(0, 2, 510) == [(0, 0)]
    assert segment_bounds(5000, 1, 510) == [(0, 510)]
    assert segment_bounds(5000, 3, 510) == [(0, 510), (2245, 2755), (4490, 5000)]


def test_collate_groups_segments_per_document():
    tokens = np.arange(5, 40, dtype=np.int32)
    data = SegmentedDocs(tokens, np.array([0, 10]), np.array([10, 25]), np.array([1, 0]), 3, segment_len=12)
    batch = collate_segments([data[0], data[1]])
    assert batch["segment_mask"].tolist() == [[True, False, False], [True, True, True]]
    assert batch["segment_index"].tolist() == [0, 3, 4, 5]
    assert batch["attention_mask"].sum(1).tolist() == [12, 12, 12, 7]  # 10 ids, 10, 10, 5 (+2 specials)
    assert batch["labels"].tolist() == [1, 0]


# ------------------------------------------------------------------------------------------------ fine-tuning
@pytest.mark.parametrize("options", [{}, {"pooling": "attention", "llrd": 0.8, "fgm_epsilon": 0.5}])
def test_a_fold_fine_tunes_and_predicts_probabilities(pretrained, data_dir, tmp_path, options):
    X, y = read_train(data_dir / "train_set.csv")
    data = TrainData(X=X, y=y, ids=np.arange(len(y)).astype(str), strata=y)
    folds = np.arange(len(y)) % 3
    model = create_model("bert", pretrained=str(pretrained), **FAST, **options)
    metrics = cv.run_fold(model, data, folds, 0, RunStore(tmp_path), NewsCompetition())
    oof = np.load(tmp_path / "fold0" / "oof.npy")
    assert oof.shape == (20, 3)
    np.testing.assert_allclose(oof.sum(1), 1.0, rtol=1e-5)
    assert (
        json.loads((tmp_path / "fold0" / "metrics.json").read_text())["n_train"] == metrics["n_train"] == 40
    )


def test_predictions_come_back_in_row_order(pretrained, data_dir):
    X, y = read_train(data_dir / "train_set.csv")
    model = create_model("bert", pretrained=str(pretrained), **{**FAST, "valid_size": 0.0}).fit(X, y)
    proba = model.predict_proba(X)
    order = np.argsort(-X.lengths, kind="stable")[:7]
    np.testing.assert_allclose(model.predict_proba(X[order]), proba[order], rtol=1e-4, atol=1e-6)


def test_layer_wise_lr_decay_groups(pretrained, data_dir):
    X, y = read_train(data_dir / "train_set.csv")
    model = create_model("bert", pretrained=str(pretrained), llrd=0.5, **{**FAST, "max_steps": 1})
    module = model.fit(X, y).module_
    lrs = {}
    for group in module.param_groups(1.0, 0.01):
        for p in group["params"]:
            lrs[id(p)] = group["lr"]
    named = dict(module.named_parameters())
    assert lrs[id(named["head.weight"])] == 1.0
    assert lrs[id(named["encoder.encoder.layer.0.attention.self.query.weight"])] == 0.5  # 1 layer
    assert lrs[id(named["encoder.embeddings.word_embeddings.weight"])] == 0.25


# ------------------------------------------------------------------------------------------------ errors
def test_missing_pretrained_directory_is_a_clear_error(data_dir, tmp_path):
    X, y = read_train(data_dir / "train_set.csv")
    with pytest.raises(UserError, match=f"pretrained directory {tmp_path / 'nowhere'} not found.*pretrain"):
        create_model("bert", pretrained=str(tmp_path / "nowhere"), **FAST).fit(X, y)
    with pytest.raises(UserError, match="not a finished pretraining output"):
        create_model("bert", pretrained=str(tmp_path), **FAST).fit(X, y)


def test_tokenizer_of_another_vocabulary_is_a_clear_error(pretrained, data_dir, tmp_path):
    import shutil

    X, y = read_train(data_dir / "train_set.csv")
    copy = tmp_path / "copy"
    shutil.copytree(pretrained, copy)
    tok.build_tokenizer(np.arange(50)).save_pretrained(str(copy))  # a 55-token vocabulary
    with pytest.raises(UserError, match="tokenizer has 55 tokens but the model's vocabulary has"):
        create_model("bert", pretrained=str(copy), **FAST).fit(X, y)


def test_model_pretrained_on_other_ids_is_a_clear_error(pretrained):
    rng = np.random.default_rng(0)
    other = Corpus.from_ids([rng.integers(100_000, 100_500, size=30) for _ in range(12)])
    with pytest.raises(UserError, match="unknown.*pretrained on this corpus"):
        create_model("bert", pretrained=str(pretrained), **FAST).fit(other, np.arange(12) % 2)


def test_fgm_adds_the_adversarial_loss(pretrained, data_dir):
    X, y = read_train(data_dir / "train_set.csv")
    model = create_model(
        "bert", pretrained=str(pretrained), dropout=0.0, **{**FAST, "max_steps": 1, "lr": 1e-9}
    ).fit(X, y)
    module = model.module_
    data = SegmentedDocs(tok.encode(X.flat, model.lookup_), X.starts, X.lengths, y, 2, 64)
    batch = collate_segments([data[i] for i in range(4)])
    module.train()
    clean = module(batch)["loss"]
    module.fgm_epsilon = 1.0
    both = module(batch)["loss"]  # clean loss + loss at embeddings moved up the gradient
    assert both > 2 * clean


def test_fine_tuning_lr_follows_the_encoder_width():
    """A tiny encoder at BERT-base's 5e-5 stays at chance; unset, the lr scales with the pretrained width."""
    from competitions.news_text_cls.models.bert import default_finetune_lr

    assert default_finetune_lr(128) == default_finetune_lr(256) == 3e-4
    assert default_finetune_lr(512) == 1e-4 and default_finetune_lr(768) == 5e-5
    model = create_model("bert")
    assert model.trainer.lr is None
    model.encoder_config_ = {"hidden_size": 128}
    assert model._trainer_config().lr == 3e-4
    assert create_model("bert", lr=2e-5)._trainer_config().lr == 2e-5  # a set lr wins


def test_a_stored_fold_model_predicts_without_the_pretrained_directory(pretrained, data_dir, tmp_path):
    import shutil

    X, y = read_train(data_dir / "train_set.csv")
    copy = tmp_path / "pretrained"
    shutil.copytree(pretrained, copy)
    data = TrainData(X=X, y=y, ids=np.arange(len(y)).astype(str), strata=y)
    store = RunStore(tmp_path / "run")
    model = create_model("bert", pretrained=str(copy), **FAST)
    cv.run_fold(model, data, np.arange(len(y)) % 3, 0, store, NewsCompetition(), None)
    shutil.rmtree(copy)
    loaded = store.load_model(0)
    oof = np.load(store.fold_dir(0) / "oof.npy")
    np.testing.assert_allclose(
        loaded.predict_proba(X[np.flatnonzero(np.arange(len(y)) % 3 == 0)]), oof, atol=1e-5
    )

"""``fasttext``: the mean of the embeddings of a document's ids and hashed id n-grams, then a linear layer.

The fastText classifier (Joulin et al., 2016) on the shared trainer. Each document's ids (head + tail truncated
to ``max_len``, like the other sequence models) give unigram rows ``id + 1`` and, for ``n = 2 .. ngram``, the
n-grams of consecutive ids hashed into ``buckets`` buckets (``h = h * 116049371 + id``, as fastText hashes word
n-grams). An ``nn.EmbeddingBag(mode="mean")`` averages the rows; a linear layer gives the logits.

Only the buckets that occur in the training rows get a row (a sorted ``buckets_`` array maps a bucket to its
row; any other bucket is padding, skipped by the mean): the same model as a full ``buckets x embed_dim`` table
whose untrained rows would only add noise, at the size of what the data holds (about 0.3M rows on 30k short
reviews instead of 2M), which keeps the stored fold model small.

The embedding takes sparse gradients and the module brings its own optimizer (``make_optimizer``, which the
shared trainer uses instead of AdamW): Adagrad, whose step touches only the rows of the batch's ids and n-grams
and adapts the step per row, so rare n-grams learn as fast as frequent ones (fastText itself uses plain SGD at a
high per-example lr; on mini-batches Adagrad reached the library's scores in fewer epochs, see the bench).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.utils.data import DataLoader

from common.config import Fraction, PositiveInt, trainer_defaults
from common.distributed import world_size
from common.errors import UserError
from common.registry import register_model
from common.trainer import TrainerConfig
from competitions.news_text_cls.data import Corpus, as_corpus
from competitions.news_text_cls.models.sequence import (
    SequenceBatches,
    SequenceClassifier,
    SequenceConfig,
    classification_output,
)

_HASH_MULT = 116049371  # fastText's word n-gram hash multiplier


def ngram_hashes(ids: np.ndarray, n: int, buckets: int) -> np.ndarray:
    """Bucket of every n-gram of consecutive ids along the last axis of an (B, L) int64 array (L - n + 1 columns);
    an n-gram touching padding (id index 0) gets -1."""
    width = ids.shape[-1] - n + 1
    if width <= 0:
        return np.full(ids.shape[:-1] + (0,), -1, dtype=np.int64)
    h = np.zeros(ids.shape[:-1] + (width,), dtype=np.int64)
    valid = np.ones_like(h, dtype=bool)
    for k in range(n):
        part = ids[..., k : k + width]
        h = (h * _HASH_MULT + part) % buckets
        valid &= part > 0
    return np.where(valid, h, -1)


class NGramBatches(SequenceBatches):
    """:class:`SequenceBatches` whose ``input_ids`` also hold each document's n-gram rows: unigram ``id + 1``
    columns, then the rows of the n-gram buckets kept at fit time (``vocab_size + position in buckets``), 0 for
    padding and unknown buckets."""

    def __init__(self, corpus: Corpus, labels, max_len: int, head_ratio: float, vocab_size: int, ngram: int,
                 buckets: int, kept: np.ndarray | None) -> None:  # fmt: skip
        super().__init__(corpus, labels, max_len, head_ratio, vocab_size)
        self.ngram, self.buckets, self.kept = ngram, buckets, kept

    def bucket_columns(self, ids: np.ndarray) -> list[np.ndarray]:
        return [ngram_hashes(ids, n, self.buckets) for n in range(2, self.ngram + 1)]

    def __getitems__(self, indices) -> dict:
        batch = super().__getitems__(indices)
        ids = batch["input_ids"].numpy()
        cols = [ids]
        for h in self.bucket_columns(ids):
            pos = np.minimum(np.searchsorted(self.kept, h), max(len(self.kept) - 1, 0))
            hit = (h >= 0) & (self.kept[pos] == h) if len(self.kept) else np.zeros_like(h, dtype=bool)
            cols.append(np.where(hit, self.vocab_size + pos, 0))
        rows = np.concatenate(cols, axis=1)
        keep = rows > 0  # one flat bag per document, padding and unknown n-grams left out
        counts = keep.sum(axis=1)
        out = {
            "offsets": torch.from_numpy(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)),
            "input_ids": torch.from_numpy(rows[keep]),
            "lengths": batch["lengths"],
        }
        if "labels" in batch:
            out["labels"] = batch["labels"]
        return out


class RowAdagrad(torch.optim.Optimizer):
    """Adagrad whose step on a sparse gradient reads and writes only the gradient's rows (torch's Adagrad masks
    the dense accumulator with the gradient, ~3x slower per step here); dense gradients take the usual update."""

    def __init__(self, params, lr: float, eps: float = 1e-10) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                acc = state["sum"]
                if p.grad.is_sparse:
                    grad = p.grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                    acc.index_add_(0, rows, values * values)
                    p.index_add_(0, rows, values.div_(acc.index_select(0, rows).sqrt_().add_(eps)), alpha=-lr)
                else:
                    acc.addcmul_(p.grad, p.grad)
                    p.addcdiv_(p.grad, acc.sqrt().add_(eps), value=-lr)


class FastTextModule(nn.Module):
    def __init__(self, n_rows: int, n_classes: int, embed_dim: int, dropout: float,
                 class_weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        # row 0 is padding by convention, but batches never hold it (flat bags), so no padding_idx: the
        # padding-aware EmbeddingBag kernels are ~3x slower
        self.embed = nn.EmbeddingBag(n_rows, embed_dim, mode="mean", sparse=True)
        nn.init.uniform_(self.embed.weight, -1.0 / embed_dim, 1.0 / embed_dim)  # fastText's input init
        with torch.no_grad():
            self.embed.weight[0] = 0.0
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, n_classes)
        nn.init.zeros_(self.head.weight)  # fastText's output init
        nn.init.zeros_(self.head.bias)
        self.register_buffer("class_weight", class_weight, persistent=False)
        self.label_smoothing = label_smoothing

    def make_optimizer(self, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        """Adagrad: it takes the embedding's sparse gradients, so a step touches only the rows of the batch's ids
        and n-grams (the trainer's AdamW would update every row of the table each step)."""
        return RowAdagrad(self.parameters(), lr=lr)

    def forward(self, batch: dict) -> dict:
        logits = self.head(self.dropout(self.embed(batch["input_ids"], batch["offsets"])))
        return classification_output(logits, batch, self.class_weight, self.label_smoothing)


@dataclass
class FastTextConfig(SequenceConfig):
    embed_dim: PositiveInt = 100
    #: id n-grams 1..ngram
    ngram: Annotated[int, Field(ge=1, le=5)] = 2
    #: hash buckets of the n-grams (n >= 2)
    buckets: PositiveInt = 2_000_000
    dropout: Fraction = 0.0
    max_len: PositiveInt = 4096
    #: the averaged n-gram table has no word2vec start (its rows are hashed n-grams, not ids)
    embedding_init: Literal["none"] = "none"
    #: Adagrad's lr (0.5 overfits the reviews bench in one epoch); like the fastText library, every labelled row
    #: trains for a fixed number of epochs (no inner holdout)
    trainer: TrainerConfig = trainer_defaults(
        epochs=5, batch_size=64, lr=0.1, valid_size=0.0, weight_decay=0.0, clip_grad=None, scheduler="linear"
    )


@register_model("fasttext", config=FastTextConfig)
@dataclass(eq=False, repr=False)
class FastText(FastTextConfig, SequenceClassifier):
    @staticmethod
    def search_space(trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-3, 3e-1, log=True),
            "embed_dim": trial.suggest_categorical("embed_dim", [50, 100, 200]),
            "ngram": trial.suggest_int("ngram", 1, 3),
            "epochs": trial.suggest_int("epochs", 3, 15),
        }

    def check_data(self, X, y) -> None:
        if world_size() > 1:  # NCCL cannot all-reduce the embedding's sparse gradients
            raise UserError(
                "fasttext trains in one process (sparse embedding gradients); run its folds in parallel instead "
                "(make -j5 folds MODEL=fasttext) rather than NPROC>1"
            )

    def fit(self, X, y, X_valid=None, y_valid=None, *, work_dir=None, callbacks=()):
        self.check_data(X, y)
        corpus = as_corpus(X)
        vocab = self.vocab_size or corpus.max_id() + 3
        self.buckets_ = self._training_buckets(corpus, vocab)
        return super().fit(corpus, y, X_valid, y_valid, work_dir=work_dir, callbacks=callbacks)

    def _training_buckets(self, corpus: Corpus, vocab: int) -> np.ndarray:
        """The sorted n-gram buckets that occur in the training rows (after truncation)."""
        data = NGramBatches(corpus, None, self.max_len, self.head_ratio, vocab, self.ngram, self.buckets,
                            np.zeros(0, np.int64))  # fmt: skip
        found = [np.zeros(0, np.int64)]
        order = np.argsort(-data.kept_lengths, kind="stable")
        for start in range(0, len(order), 512):
            ids = SequenceBatches.__getitems__(data, order[start : start + 512])["input_ids"].numpy()
            for h in data.bucket_columns(ids):
                found.append(np.unique(h[h >= 0]))
        return np.unique(np.concatenate(found))

    def _make_loader(self, X, y, train: bool, generator) -> DataLoader:
        data = NGramBatches(as_corpus(X), y, self.max_len, self.head_ratio, self.vocab_size_, self.ngram,
                            self.buckets, self.buckets_)  # fmt: skip
        return self._loader_of(data, train)

    def _build_module(self) -> nn.Module:
        return FastTextModule(
            self.vocab_size_ + len(self.buckets_), self.n_classes_, self.embed_dim, self.dropout,
            self.class_weight_, self.label_smoothing,
        )  # fmt: skip

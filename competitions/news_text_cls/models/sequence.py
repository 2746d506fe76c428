"""What every id-sequence model shares: head+tail truncation, dynamic padding, length-bucketed batches, class
weights, and the :class:`SequenceClassifier` base that plugs them into :class:`common.estimator.TorchEstimator`.

Token index ``id + 1`` feeds the embedding; ``0`` is padding and ``vocab_size - 1`` stands for any id above the
training vocabulary. A document longer than ``max_len`` keeps its first ``round(max_len * head_ratio)`` ids and
its last ``max_len - head`` ids. Batches are padded to their longest document only; training batches come from
length-sorted windows of ``bucket_size`` batches (shuffled per epoch from ``(seed, epoch)``, so a resumed run
replays the same order); evaluation batches are sorted by length and the logits put back in row order.

``embedding_init="word2vec"`` starts the embedding from word2vec vectors (gensim) trained on the text of the
store the corpus views: every row of the training file plus its companion unlabelled test text, ids only, never
a label (like ``tfidf``'s vocabulary). The vectors are memoised on ``corpus.store.cache`` per w2v params, so the
k folds of a run train word2vec once. Rows of ids word2vec did not keep (below ``w2v_min_count``) keep a random
start of the vectors' scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from common.config import Fraction, NonNegativeInt, PositiveInt, Probability
from common.distributed import resolve_device
from common.estimator import DeepConfig, TorchEstimator, argmax
from common.metrics import METRICS
from common.seed import worker_init_fn
from competitions.news_text_cls.data import Corpus, as_corpus


@dataclass
class SequenceConfig(DeepConfig):
    max_len: PositiveInt = 1024
    #: share of ``max_len`` kept from a long document's start (the rest from its end)
    head_ratio: Probability = 0.5
    #: 0: from the data (largest id + 3)
    vocab_size: NonNegativeInt = 0
    #: None, "balanced" or "sqrt" (inverse square root of class frequency)
    class_weight: Literal["balanced", "sqrt"] | None = None
    #: batches per length-sorted window
    bucket_size: PositiveInt = 50
    label_smoothing: Fraction = 0.0
    #: start the embedding from word2vec vectors trained on the train + test text (ids only, never labels)
    embedding_init: Literal["none", "word2vec"] = "none"
    w2v_epochs: PositiveInt = 5
    w2v_window: PositiveInt = 5
    w2v_min_count: PositiveInt = 1
    #: skip-gram (True) or CBOW
    w2v_sg: bool = True


def classification_output(
    logits: torch.Tensor, batch: dict, class_weight: torch.Tensor | None, label_smoothing: float
) -> dict:
    """The model's output dict: logits, plus the (weighted, smoothed) cross-entropy when labels are given."""
    out = {"logits": logits}
    if "labels" in batch:
        out["loss"] = torch.nn.functional.cross_entropy(
            logits.float(), batch["labels"], weight=class_weight, label_smoothing=label_smoothing
        )
    return out


def class_weights(y_encoded: np.ndarray, n_classes: int, mode: str | None) -> torch.Tensor | None:
    """Loss weights per class, mean 1 over the rows (None: unweighted)."""
    if mode is None:
        return None
    counts = np.bincount(y_encoded, minlength=n_classes).astype(np.float64)
    w = 1.0 / np.maximum(counts, 1.0) if mode == "balanced" else 1.0 / np.sqrt(np.maximum(counts, 1.0))
    w *= len(y_encoded) / float((w * counts).sum())
    return torch.tensor(w, dtype=torch.float32)


def word2vec_vectors(
    corpus: Corpus, dim: int, epochs: int, window: int, min_count: int, sg: bool, seed: int, workers: int = 2
) -> dict[int, np.ndarray]:
    """word2vec vectors of the ids in ``corpus``'s store text plus its unlabelled companion text (no labels), as
    ``{id: vector}``; memoised on the store per params (a new params set drops the previous vectors)."""
    from gensim.models import Word2Vec

    store = corpus.store
    key = ("w2v", dim, epochs, window, min_count, bool(sg), seed, workers)
    if key not in store.cache:
        for old in [k for k in store.cache if isinstance(k, tuple) and k[0] == "w2v"]:
            del store.cache[old]
        texts = np.concatenate([store.texts, corpus.unlabelled_texts()])
        # gensim cuts sentences at 10,000 tokens; longer documents go in as consecutive pieces
        sentences = [
            ids[i : i + 10_000] for t in texts if (ids := t.split()) for i in range(0, len(ids), 10_000)
        ]
        model = Word2Vec(
            sentences, vector_size=dim, window=window, min_count=min_count, sg=int(bool(sg)), epochs=epochs,
            seed=seed, workers=workers,
        )  # fmt: skip
        wv = model.wv
        store.cache[key] = {int(k): wv.vectors[i] for i, k in enumerate(wv.index_to_key)}
    return store.cache[key]


def init_embedding(embed: torch.nn.Embedding, vectors: dict[int, np.ndarray]) -> None:
    """Copy ``vectors`` (``{id: vector}``) into rows ``id + 1`` of ``embed``; the other rows (padding aside) are
    redrawn at the vectors' scale so pretrained and fresh rows start alike."""
    if not vectors:
        return
    weight = embed.weight.data
    ids = np.array([i for i in vectors if i + 1 < weight.shape[0] - 1], dtype=np.int64)
    mat = torch.from_numpy(np.stack([vectors[int(i)] for i in ids])).to(weight.dtype)
    std = float(mat.std())
    weight.normal_(0.0, std)
    weight[torch.from_numpy(ids + 1)] = mat
    if embed.padding_idx is not None:
        weight[embed.padding_idx] = 0.0


class SequenceBatches(Dataset):
    """Rows of a :class:`Corpus` as padded ``input_ids`` batches; fetched a batch at a time (``__getitems__``)."""

    def __init__(
        self, corpus: Corpus, labels: np.ndarray | None, max_len: int, head_ratio: float, vocab_size: int,
        min_len: int = 1,
    ) -> None:  # fmt: skip
        self.flat = corpus.flat
        self.starts = corpus.starts
        self.lengths = corpus.lengths
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.max_len, self.vocab_size, self.min_len = max_len, vocab_size, max(1, min_len)
        self.head = int(round(max_len * head_ratio))

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def kept_lengths(self) -> np.ndarray:
        return np.minimum(self.lengths, self.max_len)

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])

    def __getitems__(self, indices) -> dict:
        idx = np.asarray(indices, dtype=np.int64)
        start, length = self.starts[idx], self.lengths[idx]
        kept = np.minimum(length, self.max_len)
        width = max(int(kept.max(initial=0)), self.min_len)
        j = np.arange(width)
        pos = start[:, None] + j[None, :]
        tail = (length > self.max_len)[:, None] & (j[None, :] >= self.head)
        pos = np.where(tail, (start + length - self.max_len)[:, None] + j[None, :], pos)
        valid = j[None, :] < kept[:, None]
        ids = self.flat[np.clip(pos, 0, max(len(self.flat) - 1, 0))] if len(self.flat) else np.zeros_like(pos)
        ids = np.where(valid, np.minimum(ids.astype(np.int64) + 1, self.vocab_size - 1), 0)
        batch = {
            "input_ids": torch.from_numpy(ids),
            "lengths": torch.from_numpy(np.maximum(kept, 1)),
        }
        if self.labels is not None:
            batch["labels"] = torch.from_numpy(self.labels[idx])
        return batch


def passthrough(batch: dict) -> dict:
    """The collate function: :class:`SequenceBatches` already returns whole batches."""
    return batch


class LengthBucketSampler(Sampler):
    """Batches of similar length. Training: windows of ``bucket_size`` batches of a (seed, epoch) permutation
    are sorted by length, cut into batches, and the batches shuffled. Evaluation: longest first, in ``order``."""

    def __init__(
        self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, bucket_size: int = 50
    ):
        self.lengths = np.asarray(lengths)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.bucket_size = max(1, int(bucket_size))
        self.epoch = 0
        self.order = np.argsort(-self.lengths, kind="stable")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def _batches(self) -> list[np.ndarray]:
        if not self.shuffle:
            return [self.order[i : i + self.batch_size] for i in range(0, len(self.order), self.batch_size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(len(self.lengths))
        window = self.batch_size * self.bucket_size
        batches = []
        for w in range(0, len(perm), window):
            chunk = perm[w : w + window]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self):
        for batch in self._batches():
            yield batch.tolist()


class SequenceClassifier(TorchEstimator):
    """A TorchEstimator over a :class:`Corpus` (subclasses set ``min_len`` and build the module)."""

    min_len: int = 1
    val_metric = METRICS["macro_f1"].on(argmax)

    def fit(self, X, y, X_valid=None, y_valid=None, *, work_dir=None, callbacks=()):
        corpus = as_corpus(X)
        self.vocab_size_ = self.vocab_size or corpus.max_id() + 3
        _, counts = np.unique(np.asarray(y), return_counts=True)
        y_index = np.repeat(np.arange(len(counts)), counts)
        self.class_weight_ = class_weights(y_index, len(counts), self.class_weight)
        self.embedding_vectors_ = None
        if self.embedding_init == "word2vec":
            self.embedding_vectors_ = word2vec_vectors(
                corpus, self.embed_dim, self.w2v_epochs, self.w2v_window, self.w2v_min_count, self.w2v_sg,
                self.trainer.seed, workers=1 if self.trainer.deterministic else 2,
            )  # fmt: skip
        X_valid = as_corpus(X_valid) if X_valid is not None else None
        try:
            return super().fit(corpus, y, X_valid, y_valid, work_dir=work_dir, callbacks=callbacks)
        finally:
            self.embedding_vectors_ = None  # in the module's weights now; not stored with the model

    def _init_embedding(self, embed: torch.nn.Embedding) -> None:
        """Start ``embed`` from the word2vec vectors when ``embedding_init="word2vec"`` (call in _build_module)."""
        if getattr(self, "embedding_vectors_", None) is not None:
            with torch.no_grad():
                init_embedding(embed, self.embedding_vectors_)

    def _make_loader(self, X, y, train: bool, generator) -> DataLoader:
        data = SequenceBatches(as_corpus(X), y, self.max_len, self.head_ratio, self.vocab_size_, self.min_len)
        return self._loader_of(data, train)

    def _loader_of(self, data: SequenceBatches, train: bool) -> DataLoader:
        """Length-bucketed batches of ``data`` (a :class:`SequenceBatches`), fetched a batch at a time."""
        cfg = self.trainer
        sampler = LengthBucketSampler(
            data.kept_lengths, cfg.batch_size, shuffle=train, seed=cfg.seed, bucket_size=self.bucket_size
        )
        return DataLoader(
            data,
            batch_sampler=sampler,
            collate_fn=passthrough,
            num_workers=cfg.num_workers,
            pin_memory=resolve_device(cfg.device).type == "cuda",
            worker_init_fn=worker_init_fn if cfg.num_workers else None,
            persistent_workers=bool(cfg.num_workers) and train,
        )

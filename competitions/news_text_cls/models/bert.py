"""``bert``: fine-tunes a BERT pretrained on the contest text (the ``pretrain`` verb) on long documents.

A document longer than one segment is cut into at most ``segments`` windows of ``segment_len - 2`` ids, each
wrapped as ``[CLS] ... [SEP]``: when it fits in ``segments`` windows they tile it; otherwise the first window is
its head, the last its tail, and the others are spread evenly between (``segments=2``: first 510 and last 510
ids). Every segment goes through BERT; the segments' ``[CLS]`` vectors are pooled per document (``cls``: mean,
``attention``: learned weights) into the classifier.

Options: layer-wise learning-rate decay (``llrd`` < 1; the trainer reads :meth:`SegmentClassifier.param_groups`)
and FGM adversarial training (``fgm_epsilon`` > 0: the loss adds the loss at word embeddings moved by
``epsilon * g / ||g||``, ``g`` the gradient of the clean loss with respect to them).

``pretrained`` is a local directory written by ``pretrain`` (never a hub name). A missing directory, a tokenizer
that does not match the model's embeddings, or a vocabulary that leaves more than ``max_unk_ratio`` of the
training ids unknown (a model pretrained on other data) is a :class:`~common.errors.UserError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import BertConfig, BertModel

from common.config import Fraction, NonNegativeFloat, PositiveInt, Probability, trainer_defaults
from common.distributed import resolve_device
from common.errors import UserError
from common.estimator import DeepConfig, TorchEstimator, argmax
from common.metrics import METRICS
from common.registry import register_model
from common.seed import worker_init_fn
from common.trainer import TrainerConfig
from competitions.news_text_cls import tokenizer as tok
from competitions.news_text_cls.data import as_corpus
from competitions.news_text_cls.models.sequence import LengthBucketSampler

DEFAULT_PRETRAINED = "runs/news_text_cls/pretrained-small"


# ------------------------------------------------------------------------------------------------ segments
def segment_bounds(length: int, n_segments: int, width: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each segment of a document of ``length`` ids (segments of at most ``width`` ids)."""
    if length <= width:
        return [(0, length)]
    if length <= n_segments * width:
        return [(s, min(s + width, length)) for s in range(0, length, width)]
    if n_segments == 1:
        return [(0, width)]
    starts = np.round(np.linspace(0, length - width, n_segments)).astype(int)
    return [(int(s), int(s) + width) for s in starts]


class SegmentedDocs(Dataset):
    """Documents as token ids (``tokens[starts[i]:starts[i]+lengths[i]]``) and optional labels."""

    def __init__(self, tokens, starts, lengths, labels, n_segments: int, segment_len: int) -> None:
        self.tokens, self.starts, self.lengths, self.labels = tokens, starts, lengths, labels
        self.n_segments, self.width = n_segments, segment_len - 2

    def __len__(self) -> int:
        return len(self.starts)

    def costs(self) -> np.ndarray:
        """Tokens each document costs (what batches are bucketed by)."""
        return np.minimum(self.lengths, self.n_segments * self.width) + 2 * np.ceil(
            np.minimum(self.lengths, self.n_segments * self.width) / self.width
        )

    def __getitem__(self, i: int):
        doc = self.tokens[self.starts[i] : self.starts[i] + self.lengths[i]]
        segments = [doc[a:b] for a, b in segment_bounds(len(doc), self.n_segments, self.width)]
        return segments, (None if self.labels is None else int(self.labels[i]))


def collate_segments(items) -> dict:
    """Flatten the batch's segments into ``input_ids``/``attention_mask`` rows padded to the longest; the
    ``segment_mask`` (docs x max segments) and ``segment_index`` (row -> doc * max segments + slot) regroup them."""
    n_docs = len(items)
    n_slots = max(len(segs) for segs, _ in items)
    rows = [seg for segs, _ in items for seg in segs]
    width = max(len(r) for r in rows) + 2
    input_ids = torch.full((len(rows), width), tok.PAD_ID, dtype=torch.int64)
    attention = torch.zeros((len(rows), width), dtype=torch.int64)
    mask = torch.zeros((n_docs, n_slots), dtype=torch.bool)
    index = []
    r = 0
    for d, (segs, _) in enumerate(items):
        for s, seg in enumerate(segs):
            n = len(seg)
            input_ids[r, 0] = tok.CLS_ID
            input_ids[r, 1 : n + 1] = torch.from_numpy(np.asarray(seg, dtype=np.int64))
            input_ids[r, n + 1] = tok.SEP_ID
            attention[r, : n + 2] = 1
            mask[d, s] = True
            index.append(d * n_slots + s)
            r += 1
    batch = {
        "segment_mask": mask,
        "input_ids": input_ids,
        "attention_mask": attention,
        "segment_index": torch.tensor(index, dtype=torch.int64),
    }
    if items[0][1] is not None:
        batch["labels"] = torch.tensor([y for _, y in items], dtype=torch.int64)
    return batch


# ------------------------------------------------------------------------------------------------ module
class SegmentClassifier(nn.Module):
    def __init__(self, encoder: BertModel, n_classes: int, pooling: str, dropout: float, fgm_epsilon: float):
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.pooling = pooling
        self.fgm_epsilon = fgm_epsilon
        self.score = (
            nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
            if pooling == "attention"
            else None
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, n_classes)
        self.llrd = 1.0

    def _classify(self, batch: dict, embeds: torch.Tensor) -> torch.Tensor:
        cls = self.encoder(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).last_hidden_state[
            :, 0
        ]
        mask = batch["segment_mask"]
        n_docs, n_slots = mask.shape
        grid = cls.new_zeros(n_docs * n_slots, cls.shape[-1]).index_copy(0, batch["segment_index"], cls)
        grid = grid.view(n_docs, n_slots, -1)
        if self.score is None:
            weights = mask.to(grid.dtype) / mask.sum(1, keepdim=True).clamp(min=1).to(grid.dtype)
        else:
            weights = (
                self.score(grid).squeeze(-1).float().masked_fill(~mask, -torch.inf).softmax(-1).to(grid.dtype)
            )
        pooled = (weights.unsqueeze(-1) * grid).sum(1)
        return self.head(self.dropout(pooled))

    def forward(self, batch: dict) -> dict:
        embeds = self.encoder.embeddings.word_embeddings(batch["input_ids"])
        logits = self._classify(batch, embeds)
        out = {"logits": logits}
        if "labels" in batch:
            loss = F.cross_entropy(logits.float(), batch["labels"])
            if self.training and self.fgm_epsilon > 0 and torch.is_grad_enabled():
                (grad,) = torch.autograd.grad(loss, embeds, retain_graph=True)
                delta = self.fgm_epsilon * grad / grad.norm().clamp(min=1e-12)
                adversarial = self._classify(batch, embeds + delta.detach())
                loss = loss + F.cross_entropy(adversarial.float(), batch["labels"])
            out["loss"] = loss
        return out

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups: the head at ``lr``, encoder layer ``i`` of ``n`` at ``lr * llrd**(n - i)``, the embeddings
        at ``lr * llrd**(n + 1)``; no weight decay on biases and norms."""
        n = len(self.encoder.encoder.layer)
        depth = {"embeddings": n + 1}
        groups: dict[tuple[float, bool], list] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith("encoder.embeddings"):
                k = depth["embeddings"]
            elif name.startswith("encoder.encoder.layer."):
                k = n - int(name.split(".")[3])
            else:
                k = 0
            groups.setdefault((lr * self.llrd**k, p.ndim >= 2), []).append(p)
        return [
            {"params": ps, "lr": g_lr, "weight_decay": weight_decay if decay else 0.0}
            for (g_lr, decay), ps in groups.items()
        ]


# ------------------------------------------------------------------------------------------------ pretrained
def load_pretrained(path: str | Path, dropout: float):
    """Tokenizer and BERT encoder from a ``pretrain`` output directory (clear errors when it is not one)."""
    path = Path(path)
    hint = f"(run `python -m competitions.news_text_cls pretrain --out {path}` first)"
    if not path.is_dir():
        raise UserError(f"pretrained directory {path} not found {hint}")
    weights = path / "model.safetensors"
    if not (path / "config.json").is_file() or not weights.is_file():
        raise UserError(f"{path}: no config.json/model.safetensors; not a finished pretraining output {hint}")
    tokenizer = tok.load_tokenizer(path)
    config = BertConfig.from_pretrained(str(path))
    if config.vocab_size != len(tokenizer):
        raise UserError(
            f"{path}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has "
            f"{config.vocab_size}; tokenizer.json and model.safetensors come from different runs"
        )
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
    config._attn_implementation = "sdpa"
    encoder = BertModel(config, add_pooling_layer=False)
    state = {k.removeprefix("bert."): v for k, v in load_file(str(weights)).items() if k.startswith("bert.")}
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{weights}: weights do not fit {path}/config.json ({first})") from None
    return tokenizer, encoder


# ------------------------------------------------------------------------------------------------ estimator
#: fine-tuning learning rate by encoder width when ``lr`` is not set: small encoders need larger steps (a 2 x 128
#: encoder stayed at chance with 5e-5 and learned with 3e-4); the base size keeps the BERT paper's 5e-5
FINETUNE_LR = ((256, 3e-4), (512, 1e-4), (10**9, 5e-5))


def default_finetune_lr(hidden_size: int) -> float:
    return next(lr for width, lr in FINETUNE_LR if hidden_size <= width)


@dataclass
class BertClassifierConfig(DeepConfig):
    #: local directory written by the pretrain verb (never a hub name)
    pretrained: str = DEFAULT_PRETRAINED
    segments: PositiveInt = 2
    #: tokens per segment including [CLS] and [SEP] (at most the model's positions)
    segment_len: Annotated[int, Field(ge=3)] = 512
    pooling: Literal["cls", "attention"] = "cls"
    dropout: Fraction = 0.1
    #: layer-wise learning-rate decay factor (1.0: off)
    llrd: Annotated[float, Field(gt=0, le=1)] = 1.0
    #: FGM adversarial training step size on the word embeddings (0: off)
    fgm_epsilon: NonNegativeFloat = 0.0
    #: largest share of training ids the pretrained vocabulary may not know
    max_unk_ratio: Probability = 0.05
    #: lr None: by the pretrained encoder's width (FINETUNE_LR: 3e-4 mini, 1e-4 small, 5e-5 base)
    trainer: TrainerConfig = trainer_defaults(
        epochs=3,
        batch_size=16,
        lr=None,
        weight_decay=0.01,
        scheduler="linear",
        warmup_ratio=0.1,
        valid_size=0.05,
    )


@register_model("bert", config=BertClassifierConfig)
@dataclass(eq=False, repr=False)
class BertClassifier(BertClassifierConfig, TorchEstimator):
    val_metric = METRICS["macro_f1"].on(argmax)

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 1e-5, 5e-4, log=True),
            "epochs": trial.suggest_int("epochs", 2, 5),
            "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.2),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
            "pooling": trial.suggest_categorical("pooling", ["cls", "attention"]),
        }

    def fit(self, X, y, X_valid=None, y_valid=None, *, work_dir=None, callbacks=()):
        tokenizer, self._encoder = load_pretrained(self.pretrained, self.dropout)
        if self.segment_len > self._encoder.config.max_position_embeddings:
            raise UserError(
                f"segment_len {self.segment_len} exceeds the {self._encoder.config.max_position_embeddings} "
                f"positions of {self.pretrained}"
            )
        self.lookup_ = tok.id_lookup(tokenizer)
        self.encoder_config_ = self._encoder.config.to_dict()
        corpus = as_corpus(X)
        tokens = self._tokens(corpus)
        sample = np.linspace(0, len(corpus) - 1, min(len(corpus), 2000)).astype(int) if len(corpus) else []
        ids = np.concatenate(
            [tokens[corpus.starts[i] : corpus.starts[i] + corpus.lengths[i]] for i in sample] or [[]]
        )
        unk = float(np.mean(ids == tok.UNK_ID)) if len(ids) else 0.0
        if unk > self.max_unk_ratio:
            raise UserError(
                f"{self.pretrained}: its vocabulary leaves {unk:.1%} of the training ids unknown "
                f"(max_unk_ratio {self.max_unk_ratio:.0%}); was it pretrained on this corpus?"
            )
        try:
            return super().fit(X, y, X_valid, y_valid, work_dir=work_dir, callbacks=callbacks)
        finally:
            del self._encoder

    def _trainer_config(self) -> TrainerConfig:
        if self.trainer.lr is not None:
            return self.trainer
        width = (getattr(self, "encoder_config_", None) or {}).get("hidden_size")
        if width is None and getattr(self, "_encoder", None) is not None:
            width = self._encoder.config.hidden_size
        return replace(self.trainer, lr=default_finetune_lr(width or 768))

    def _build_module(self) -> nn.Module:
        module = SegmentClassifier(
            self._encoder, self.n_classes_, self.pooling, self.dropout, self.fgm_epsilon
        )
        module.llrd = self.llrd
        return module

    def _restore_module(self) -> nn.Module:
        """The fitted shape without the pretrained directory: the encoder from its saved config."""
        config = BertConfig.from_dict(self.encoder_config_)
        self._encoder = BertModel(config, add_pooling_layer=False)
        try:
            return self._build_module()
        finally:
            del self._encoder

    def _tokens(self, corpus) -> np.ndarray:
        """Token ids of the whole store behind ``corpus`` (memoised per store and vocabulary)."""
        key = ("bert-tokens", len(self.lookup_), hash(self.lookup_.tobytes()))
        cache = corpus.store.cache
        if key not in cache:
            for old in [k for k in cache if isinstance(k, tuple) and k[:1] == ("bert-tokens",)]:
                del cache[old]
            dtype = np.uint16 if len(self.lookup_) and self.lookup_.max() < 2**16 else np.int32
            cache[key] = tok.encode(corpus.flat, self.lookup_).astype(dtype, copy=False)
        return cache[key]

    def _dataset(self, X, y) -> SegmentedDocs:
        corpus = as_corpus(X)
        return SegmentedDocs(
            self._tokens(corpus), corpus.starts, corpus.lengths, y, self.segments, self.segment_len
        )

    def _make_loader(self, X, y, train: bool, generator):
        data = self._dataset(X, y)
        cfg = self.trainer
        batch_size = cfg.batch_size if train else 2 * cfg.batch_size
        sampler = LengthBucketSampler(data.costs(), batch_size, shuffle=train, seed=cfg.seed)
        return DataLoader(
            data,
            batch_sampler=sampler,
            collate_fn=collate_segments,
            num_workers=cfg.num_workers,
            pin_memory=resolve_device(cfg.device).type == "cuda",
            worker_init_fn=worker_init_fn if cfg.num_workers else None,
        )

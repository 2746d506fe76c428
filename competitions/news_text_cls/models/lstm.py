"""``lstm``: embedding, bidirectional LSTM over each document's real length, attention pooling, linear.

On the GPU the LSTM runs over the packed batch (cuDNN handles the lengths). On the CPU PyTorch's packed LSTM is
slow to train when a batch's lengths differ: its backward pass allocates and zero-fills a gradient the size of
the whole packed input at every time step (O(steps x tokens); one 32 x 243 batch of lengths 196..243 took 10 s
against 0.8 s with equal lengths), so there :func:`padded_bilstm` runs each direction over the padded batch, the
backward one over every document reversed within its length: the same outputs, a different schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from common.config import Fraction, PositiveInt, trainer_defaults
from common.registry import register_model
from common.trainer import TrainerConfig
from competitions.news_text_cls.models.sequence import (
    SequenceClassifier,
    SequenceConfig,
    classification_output,
)


class BiLSTMAttentionModule(nn.Module):
    def __init__(
        self, vocab_size: int, n_classes: int, embed_dim: int, hidden: int, layers: int, dropout: float,
        class_weight: torch.Tensor | None = None, label_smoothing: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            embed_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )  # fmt: skip
        self.attn = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, n_classes)
        self.register_buffer("class_weight", class_weight, persistent=False)
        self.label_smoothing = label_smoothing

    def forward(self, batch: dict) -> dict:
        ids, lengths = batch["input_ids"], batch["lengths"]
        x = self.dropout(self.embed(ids))
        if x.device.type == "cpu":
            h = padded_bilstm(self.lstm, x, lengths)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=ids.shape[1])
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        scores = self.attn(h).squeeze(-1).float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).to(h.dtype)
        pooled = torch.bmm(weights.unsqueeze(1), h).squeeze(1)
        logits = self.head(self.dropout(pooled))
        return classification_output(logits, batch, self.class_weight, self.label_smoothing)


def padded_bilstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A bidirectional, batch-first ``lstm`` over right-padded ``x`` (B, T, E) whose row ``b`` holds ``lengths[b]``
    real steps, without packing: the outputs of the packed LSTM (``pad_packed_sequence`` of it), zeros past each
    row's length.

    Each layer runs each direction as a one-layer LSTM over the whole padded batch: the forward one meets a row's
    padding only after its last real step; the backward one runs over every row reversed within its length (the
    same index map turns its outputs back), so it starts at the row's last real step, as packing does. Dropout
    between layers as in ``nn.LSTM``."""
    if not (lstm.bidirectional and lstm.batch_first and lstm.proj_size == 0):
        raise ValueError("padded_bilstm expects a bidirectional, batch-first LSTM without projections")
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    inside = steps < lengths[:, None]
    reverse = torch.where(inside, lengths[:, None] - 1 - steps, steps)[..., None]  # its own inverse
    h0 = x.new_zeros(1, x.shape[0], lstm.hidden_size)
    out = x
    for layer in range(lstm.num_layers):
        if layer:
            out = F.dropout(out, lstm.dropout, lstm.training)
        directions = []
        for suffix in ("", "_reverse"):
            names = [f"weight_ih_l{layer}", f"weight_hh_l{layer}"]
            names += [f"bias_ih_l{layer}", f"bias_hh_l{layer}"] if lstm.bias else []
            weights = [getattr(lstm, name + suffix) for name in names]
            inp = out if not suffix else out.gather(1, reverse.expand(-1, -1, out.shape[2]))
            h = torch.lstm(inp, (h0, h0), weights, lstm.bias, 1, 0.0, lstm.training, False, True)[0]
            directions.append(h if not suffix else h.gather(1, reverse.expand(-1, -1, h.shape[2])))
        out = torch.cat(directions, dim=2)
    return out.masked_fill(~inside[..., None], 0.0)


@dataclass
class LSTMConfig(SequenceConfig):
    embed_dim: PositiveInt = 128
    hidden: PositiveInt = 128
    layers: PositiveInt = 1
    dropout: Fraction = 0.2
    max_len: PositiveInt = 512
    trainer: TrainerConfig = trainer_defaults(epochs=5, batch_size=64, lr=2e-3)


@register_model("lstm", config=LSTMConfig)
@dataclass(eq=False, repr=False)
class BiLSTM(LSTMConfig, SequenceClassifier):
    @staticmethod
    def search_space(trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 5e-3, log=True),
            "hidden": trial.suggest_categorical("hidden", [64, 128, 256]),
            "layers": trial.suggest_int("layers", 1, 2),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "max_len": trial.suggest_categorical("max_len", [256, 512, 1024]),
        }

    def _build_module(self) -> nn.Module:
        module = BiLSTMAttentionModule(
            self.vocab_size_, self.n_classes_, self.embed_dim, self.hidden, self.layers, self.dropout,
            self.class_weight_, self.label_smoothing,
        )  # fmt: skip
        self._init_embedding(module.embed)
        return module

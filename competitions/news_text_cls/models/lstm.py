"""``lstm``: embedding, bidirectional LSTM over the packed sequence (cuDNN on GPU), attention pooling, linear."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
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
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=ids.shape[1])
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        scores = self.attn(h).squeeze(-1).float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).to(h.dtype)
        pooled = torch.bmm(weights.unsqueeze(1), h).squeeze(1)
        logits = self.head(self.dropout(pooled))
        return classification_output(logits, batch, self.class_weight, self.label_smoothing)


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

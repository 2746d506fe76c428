"""BERT presets and the masked-LM module the shared trainer drives.

:class:`MaskedLM` wraps :class:`transformers.BertForMaskedLM` in the repository's contract (``module(batch)``
returns ``{"loss", "logits"}``). The prediction head runs on the masked positions only (15% of the tokens), which
spares most of the ``hidden x vocab`` decoder's compute; in evaluation ``logits`` are the predicted token ids
(``-100`` where nothing was masked), so the trainer's injected metric is the masked-token accuracy without ever
stacking ``blocks x length x vocab`` scores on the host.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertForMaskedLM

from competitions.news_text_cls.tokenizer import PAD_ID

#: size -> (layers, hidden, heads, intermediate)
PRESETS = {
    "mini": (4, 256, 4, 1024),
    "small": (6, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
}


def bert_config(
    vocab_size: int,
    size: str = "small",
    *,
    num_layers: int | None = None,
    hidden_size: int | None = None,
    num_heads: int | None = None,
    intermediate_size: int | None = None,
    max_positions: int = 512,
    dropout: float = 0.1,
) -> BertConfig:
    """A :class:`BertConfig` from a preset, any dimension overridden."""
    layers, hidden, heads, inter = PRESETS[size]
    return BertConfig(
        vocab_size=vocab_size,
        num_hidden_layers=num_layers or layers,
        hidden_size=hidden_size or hidden,
        num_attention_heads=num_heads or heads,
        intermediate_size=intermediate_size or inter,
        max_position_embeddings=max_positions,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=PAD_ID,
        type_vocab_size=1,
        attn_implementation="sdpa",
    )


class MaskedLM(nn.Module):
    """``{"input_ids", "labels"}`` -> MLM loss over the masked positions, and logits (train) or predictions (eval)."""

    def __init__(self, model: BertForMaskedLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        hidden = self.model.bert(
            input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")
        ).last_hidden_state
        labels = batch.get("labels")
        if labels is None:
            return {"logits": self.model.cls(hidden)}
        selected = labels != -100
        logits = self.model.cls(hidden[selected])
        target = labels[selected]
        loss = F.cross_entropy(logits.float(), target) if len(target) else hidden.sum() * 0.0
        if self.training:
            return {"loss": loss, "logits": logits}
        predictions = torch.full_like(labels, -100)
        predictions[selected] = logits.argmax(-1)
        return {"loss": loss, "logits": predictions}


def masked_accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Share of the masked positions (``labels != -100``) whose token was predicted."""
    selected = labels != -100
    return float((predictions[selected] == labels[selected]).mean()) if selected.any() else float("nan")

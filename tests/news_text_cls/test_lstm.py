"""The CPU LSTM without packing computes what the packed LSTM computes (outputs and gradients)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from competitions.news_text_cls.models.lstm import BiLSTMAttentionModule, padded_bilstm

LENGTHS = [9, 9, 4, 1, 7, 2]  # unequal, unsorted, one single-step row


def _packed(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.shape[1])[0]


@pytest.mark.parametrize("layers", [1, 2])
def test_padded_bilstm_matches_the_packed_lstm(layers):
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 4, num_layers=layers, batch_first=True, bidirectional=True)  # dropout 0: deterministic
    lengths = torch.tensor(LENGTHS)
    x = torch.randn(len(LENGTHS), max(LENGTHS), 5)
    x[torch.arange(x.shape[1])[None, :] >= lengths[:, None]] = 7.0  # padding content must not leak in
    grads = []
    for run in (_packed, padded_bilstm):
        lstm.zero_grad()
        out = run(lstm, x, lengths)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([p.grad.clone() for p in lstm.parameters()])
        if run is _packed:
            expected = out.detach()
    torch.testing.assert_close(out.detach(), expected, rtol=1e-5, atol=1e-6)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_module_forward_is_unchanged_on_cpu():
    """Logits and loss of the module equal the packed formulation it replaced on the CPU."""
    torch.manual_seed(1)
    module = BiLSTMAttentionModule(vocab_size=50, n_classes=3, embed_dim=6, hidden=5, layers=2, dropout=0.0)
    module.eval()
    lengths = torch.tensor(LENGTHS)
    ids = torch.randint(1, 50, (len(LENGTHS), max(LENGTHS)))
    ids[torch.arange(ids.shape[1])[None, :] >= lengths[:, None]] = 0
    batch = {"input_ids": ids, "lengths": lengths, "labels": torch.tensor([0, 1, 2, 0, 1, 2])}
    out = module(batch)

    x = module.embed(ids)
    h = _packed(module.lstm, x, lengths)
    mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
    scores = module.attn(h).squeeze(-1).masked_fill(~mask, float("-inf"))
    pooled = torch.bmm(torch.softmax(scores, dim=1).unsqueeze(1), h).squeeze(1)
    logits = module.head(pooled)
    torch.testing.assert_close(out["logits"], logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss"], nn.functional.cross_entropy(logits, batch["labels"]))

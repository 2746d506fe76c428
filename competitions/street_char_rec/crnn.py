"""``crnn``: a CTC reader. Backbone feature map (a from-scratch resnet18 at stride 16 by default) -> one feature
vector per column (height averaged) -> 1-D convolutions (or a BiLSTM added back onto its input) -> 11 symbols per
column (digits 0-9 and the CTC blank, index 10) -> CTC loss.

CTC reads strings of any length: training never refuses a label for being longer than ``max_chars`` (a label that
needs more frames than the feature map has columns cannot be aligned; it is warned about and its loss is zero).
Decoding is greedy (best symbol per column, repeats merged, blanks dropped) or a prefix beam search
(``decode=beam``, ``beam_width``), which sums the probability of every path giving the same string.

``predict`` returns the decoded strings; ``predict_proba`` returns the contest's (n, max_chars, 11) array built from
them (:mod:`.positions`): character i's distribution is the frame posterior at the column where that character
peaks, the position after the last character holds the chance that no further character starts (over the columns
after it, the lowest blank-or-same-character probability; the other digits keep their probabilities there), later
positions are blank. The array decodes back to exactly the CTC string, so submissions and OOF scores are the CTC
decode's, and blends with the multi-head models average per position. An empty decode (no character at all) becomes
the single most probable digit of any column, as the contest's strings are never empty; strings longer than
``max_chars`` are cut to it (a warning counts them).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from common.config import Fraction, PositiveInt
from common.errors import UserError
from common.metrics import METRICS, Metric
from common.registry import register_model
from competitions.street_char_rec import labels as codec
from competitions.street_char_rec.backbones import FeatureLevels, SmallConvNet, TimmLevels, one_of
from competitions.street_char_rec.labels import BLANK
from competitions.street_char_rec.models import IMAGENET_MEAN, IMAGENET_STD, StreetEstimator, TakeOffConfig
from competitions.street_char_rec.positions import assemble, digit_codes, warn_truncated

#: symbols a column may emit with less probability than this are not expanded by the beam search
BEAM_PRUNE = 1e-3


# ------------------------------------------------------------------------------------------ decoding
def greedy_path(probs: np.ndarray) -> tuple[list[int], list[int]]:
    """Best symbol per column, repeats merged, blanks dropped: ``(digits, peak column of each digit)``."""
    best = probs.argmax(1)
    digits: list[int] = []
    peaks: list[int] = []
    prev = BLANK
    for t, c in enumerate(best.tolist()):
        if c != BLANK:
            if c != prev:
                digits.append(c)
                peaks.append(t)
            elif probs[t, c] > probs[peaks[-1], c]:
                peaks[-1] = t
        prev = c
    return digits, peaks


def _extend(beams: dict, prefix: tuple, pb: float, pnb: float, peaks: tuple) -> None:
    """Add a path's probability (ending in blank, ending in a character) to ``prefix``; its peaks follow the most
    probable single contribution."""
    entry = beams.get(prefix)
    if entry is None:
        beams[prefix] = [pb, pnb, peaks, pb + pnb]
    else:
        entry[0] += pb
        entry[1] += pnb
        if pb + pnb > entry[3]:
            entry[2], entry[3] = peaks, pb + pnb


def beam_search(probs: np.ndarray, beam_width: int) -> tuple[list[int], list[int]]:
    """CTC prefix beam search: the string whose paths have the most probability in total, kept ``beam_width``
    prefixes at a time; ``(digits, peak column of each digit)`` (the peaks of the prefix's most probable path
    continuation)."""
    # prefix -> [p ending in blank, p ending in its last character, peaks, best single contribution]
    beams: dict[tuple, list] = {(): [1.0, 0.0, (), 1.0]}
    for t in range(len(probs)):
        p = probs[t]
        cands = np.flatnonzero(p >= BEAM_PRUNE).tolist() or [int(p.argmax())]
        nxt: dict[tuple, list] = {}
        for prefix, (pb, pnb, peaks, _) in beams.items():
            for c in cands:
                pc = float(p[c])
                if c == BLANK:
                    _extend(nxt, prefix, (pb + pnb) * pc, 0.0, peaks)
                elif prefix and c == prefix[-1]:
                    # the same character continues (no blank between): the prefix stays
                    stay = peaks if probs[peaks[-1], c] >= pc else (*peaks[:-1], t)
                    _extend(nxt, prefix, 0.0, pnb * pc, stay)
                    # after a blank, the character repeats
                    _extend(nxt, (*prefix, c), 0.0, pb * pc, (*peaks, t))
                else:
                    _extend(nxt, (*prefix, c), 0.0, (pb + pnb) * pc, (*peaks, t))
        ranked = sorted(nxt.items(), key=lambda kv: kv[1][0] + kv[1][1], reverse=True)[:beam_width]
        total = sum(v[0] + v[1] for _, v in ranked) or 1.0
        beams = {k: [v[0] / total, v[1] / total, v[2], v[3] / total] for k, v in ranked}
    best = max(beams.items(), key=lambda kv: kv[1][0] + kv[1][1])
    return list(best[0]), list(best[1][2])


def end_distribution(probs: np.ndarray, last: int, after: int) -> np.ndarray | None:
    """Over the columns after ``after``: the one least sure that no new character starts there (its blank plus
    the last character's probability, which would only extend that character). Its posterior with the last
    character's mass moved to the blank is the distribution of the position after the string; None when no
    column follows."""
    rest = probs[after + 1 :]
    if not len(rest):
        return None
    t = int((rest[:, BLANK] + rest[:, last]).argmin())
    v = rest[t].astype(np.float64)
    v[BLANK] += v[last]
    v[last] = 0.0
    return v


def decode_frames(
    probs: np.ndarray, max_chars: int, mode: str = "greedy", beam_width: int = 8
) -> tuple[np.ndarray, np.ndarray, int]:
    """Column posteriors (n, T, 11) -> ``(strings, (n, max_chars, 11) position probabilities, number cut)``."""
    probs = np.asarray(probs, dtype=np.float64)
    strings, out, cut = [], np.zeros((len(probs), max_chars, codec.N_CLASSES), dtype=np.float32), 0
    for k, frames in enumerate(probs):
        if mode == "beam":
            digits, peaks = beam_search(frames, beam_width)
        else:
            digits, peaks = greedy_path(frames)
        if not digits:  # the contest's strings are never empty: the most probable digit of any column
            t, d = np.unravel_index(int(frames[:, :BLANK].argmax()), frames[:, :BLANK].shape)
            digits, peaks = [int(d)], [int(t)]
        end = end_distribution(frames, digits[-1], peaks[-1])
        text, out[k], truncated = assemble(digits, frames[peaks], end, max_chars)
        strings.append(text)
        cut += truncated
    return np.array(strings, dtype=object).astype(str), out, cut


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(np.asarray(logits)).float(), dim=-1).numpy()


def frames_needed(label: str) -> int:
    """Columns CTC needs for ``label``: one per character plus a blank between equal neighbours."""
    return len(label) + sum(a == b for a, b in zip(label, label[1:], strict=False))


# ------------------------------------------------------------------------------------------ the network
def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 N x H x W x 3 from the cache -> normalised float N x 3 x H x W (a float batch passes unchanged)."""
    if images.dtype == torch.uint8:
        return (images.permute(0, 3, 1, 2).float() - mean) / std
    return images


class CTCReader(nn.Module):
    """``forward(batch)`` -> ``{"logits": N x T x 11}`` (+ ``"loss"``, the CTC loss, when the batch has labels:
    digit codes padded with 10)."""

    def __init__(self, features: FeatureLevels, seq: str, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.features = features
        self.proj = nn.Linear(features.channels[-1], hidden)
        self.seq_kind = seq
        if seq == "lstm":
            # residual (added back onto its input), so named apart from the plain BiLSTM stored earlier as
            # ``seq``: such weights are refused on loading rather than read into a different network
            self.rnn = nn.LSTM(
                hidden,
                hidden // 2,
                num_layers=layers,
                bidirectional=True,
                batch_first=True,
                dropout=dropout if layers > 1 else 0.0,
            )
        else:
            self.seq = nn.Sequential(
                *(
                    nn.Sequential(nn.Conv1d(hidden, hidden, 3, padding=1), nn.BatchNorm1d(hidden), nn.ReLU())
                    for _ in range(layers)
                )
            )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, codec.N_CLASSES)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, batch: dict) -> dict:
        x = normalise(batch["images"], self.mean, self.std)
        columns = self.features(x)[-1].mean(2).transpose(1, 2)  # N x T x C: each column's features
        h = self.proj(columns)
        if self.seq_kind == "lstm":
            h = h + self.rnn(h)[0]  # the frame's own features reach the head directly
        else:
            h = self.seq(h.transpose(1, 2)).transpose(1, 2)
        logits = self.head(self.dropout(h))
        out = {"logits": logits}
        if "labels" in batch:
            targets = batch["labels"]
            lengths = (targets != BLANK).sum(1)
            log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # T x N x 11
            steps = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long, device=logits.device)
            out["loss"] = nn.functional.ctc_loss(
                log_probs, targets, steps, lengths, blank=BLANK, zero_infinity=True
            )
        return out


# ------------------------------------------------------------------------------------------ the model
@dataclass
class CRNNConfig(TakeOffConfig):
    # a resnet18's stride-16 level read by 1-D convolutions took off in 10 epochs on the demo data; the small CNN
    # at stride 8 and a plain BiLSTM stayed on the plateau there, a residual BiLSTM took off later (README)
    backbone: str = "resnet18"  # any timm model name, or "small" (a small CNN from scratch)
    pretrained_path: str | None = None  # a local checkpoint of a timm backbone; never downloaded
    width: PositiveInt = 32  # channels of the small CNN's first block (doubled twice)
    col_stride: Annotated[int, one_of(4, 8, 16)] = (
        16  # image columns per CTC frame: the feature level's width reduction
    )
    seq: Literal["lstm", "conv"] = "conv"
    hidden: Annotated[int, Field(ge=2, multiple_of=2)] = 128  # even: the BiLSTM's two directions add up to it
    seq_layers: PositiveInt = 2
    dropout: Fraction = 0.2
    decode: Literal["greedy", "beam"] = "beam"
    beam_width: Annotated[int, Field(ge=1, le=64)] = 8


@register_model("crnn", config=CRNNConfig)
@dataclass(eq=False, repr=False)
class StreetCRNN(CRNNConfig, StreetEstimator):
    """See the module docstring."""

    @property
    def val_metric(self) -> Metric:
        """Whole-string accuracy of the greedy decode (the beam search is for predictions)."""
        max_chars = self.max_chars
        return METRICS["string_accuracy"].on(
            lambda logits: decode_frames(softmax(logits), max_chars)[0], codec.decode
        )

    def check_data(self, X, y) -> None:
        """Labels of any length are fine; those needing more frames than the feature map has are warned about."""
        y = np.asarray(y).astype(str)
        digit_codes(y)  # digits only
        columns = self.columns()
        needed = np.array([frames_needed(s) for s in y])
        if (needed > columns).any():
            worst = y[int(needed.argmax())]
            warnings.warn(
                f"crnn: {int((needed > columns).sum())} label(s) need more CTC frames than the {columns} columns "
                f"of a {self.img_h}x{self.img_w} image at col_stride={self.col_stride} (e.g. {worst!r}); CTC "
                "cannot align them and skips them: raise img_w or lower col_stride",
                stacklevel=2,
            )

    def columns(self) -> int:
        """Frames per image (the feature map's width), from a forward pass on a blank image."""
        module = self._build_module(load_weights=False).eval()
        with torch.no_grad():
            blank = torch.zeros((1, self.img_h, self.img_w, 3), dtype=torch.uint8)
            return int(module({"images": blank})["logits"].shape[1])

    def _features(self, load_weights: bool) -> FeatureLevels:
        if self.backbone == "small":
            n_wide = {4: 2, 8: 3, 16: 4}[self.col_stride]
            pools = [(2, 2)] * n_wide + [(2, 1)] * (4 - n_wide)
            return SmallConvNet(self.width, pools, take=[3])

        def pick(reductions: list[int]) -> list[int]:
            if self.col_stride not in reductions:
                raise UserError(
                    f"backbone {self.backbone!r} has feature levels at strides {sorted(set(reductions))}; "
                    f"col_stride={self.col_stride} is not one of them"
                )
            return [max(i for i, r in enumerate(reductions) if r == self.col_stride)]

        return TimmLevels(self.backbone, self.pretrained_path if load_weights else None, pick)

    def _build_module(self, load_weights: bool = True) -> nn.Module:
        return CTCReader(self._features(load_weights), self.seq, self.hidden, self.seq_layers, self.dropout)

    def _restore_module(self) -> nn.Module:
        """The stored weights replace the backbone's: the local checkpoint need not exist any more."""
        return self._build_module(load_weights=False)

    # targets: digit codes padded with 10 to the longest label (CTC needs no fixed length)
    def _encode_targets(self, y) -> np.ndarray:
        self.classes_ = np.arange(codec.N_CLASSES)
        return digit_codes(y)

    def _transform_targets(self, y) -> np.ndarray:
        return digit_codes(y)

    # predictions
    def frame_probs(self, X) -> np.ndarray:
        """Column posteriors (n, T, 11), averaged over the TTA views when ``tta``."""
        return StreetEstimator.predict_proba(self, X)

    def decode_probs(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        strings, proba, cut = decode_frames(frames, self.max_chars, self.decode, self.beam_width)
        warn_truncated(cut, len(strings), self.max_chars, "crnn")
        return strings, proba

    def predict_proba(self, X) -> np.ndarray:
        return self.decode_probs(self.frame_probs(X))[1]

    def predict(self, X) -> np.ndarray:
        return self.decode_probs(self.frame_probs(X))[0]

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
            "hidden": trial.suggest_categorical("hidden", [64, 128, 256]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "seq": trial.suggest_categorical("seq", ["lstm", "conv"]),
            "aug_rotate": trial.suggest_float("aug_rotate", 0.0, 15.0),
        }

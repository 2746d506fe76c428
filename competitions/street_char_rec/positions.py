"""A decoded string as the contest's per-position probabilities, for models that decode whole strings themselves.

The multi-head models predict (n, max_chars, 11) probabilities: position i is the i-th character, 10 the blank that
ends the string (:mod:`.labels`). ``crnn`` (CTC) and ``detector`` (boxes) decode a string by their own rules; to
blend with the multi-head models and to go through the same k-fold and submission code they return the same array,
built here from their decoded digits:

- position i < L (the decoded length): a distribution over the 11 symbols for that character (the model says which),
  made to have the decoded digit as its strict argmax (:func:`make_argmax`: swapped with the largest entry if the
  model's distribution disagrees, raised a float32 step above a tie);
- position L: the distribution that the string ends there (blank as its strict argmax);
- positions after L: blank with probability 1;
- a string longer than ``max_chars`` keeps its first ``max_chars`` characters (the array has no room for more;
  :func:`warn_truncated` says how many were cut).

So ``labels.decode_scores`` of the array gives back exactly the decoded string (:func:`assemble` asserts nothing but
is tested on random inputs), and a blend averages each position's distributions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from competitions.street_char_rec.labels import BLANK, N_CLASSES, encode


def digit_codes(y) -> np.ndarray:
    """Training targets of any length: digit codes padded with the blank (10) to the longest label."""
    y = np.asarray(y).astype(str)
    return encode(y, max(1, int(np.char.str_len(y).max(initial=1))))


def make_argmax(v: np.ndarray, k: int) -> np.ndarray:
    """A float32 copy of the distribution ``v`` whose strict argmax is ``k``: if another entry is larger, the two
    swap; a tie is broken by raising ``v[k]`` to the next float32 above (the sum moves by ~1e-7)."""
    v = np.array(v, dtype=np.float32)
    j = int(v.argmax())
    if j != k and v[j] > v[k]:
        v[j], v[k] = v[k], v[j]
    others = np.delete(v, k)
    top = others.max() if len(others) else np.float32(0)
    if v[k] <= top:
        v[k] = np.nextafter(top, np.float32(np.inf), dtype=np.float32)
    return v


def normalised(v: np.ndarray) -> np.ndarray:
    v = np.clip(np.asarray(v, dtype=np.float64), 0, None)
    total = v.sum()
    return v / total if total > 0 else np.full(len(v), 1.0 / len(v))


def assemble(
    digits: Sequence[int], char_dists: np.ndarray, end_dist: np.ndarray | None, max_chars: int
) -> tuple[str, np.ndarray, bool]:
    """``(string, (max_chars, 11) float32 probabilities, truncated)`` for one image: ``digits`` decoded (at least
    one), ``char_dists[i]`` the 11-way distribution of character i, ``end_dist`` the distribution of the position
    after the last character (None: blank with probability 1)."""
    digits = [int(d) for d in digits]
    truncated = len(digits) > max_chars
    digits = digits[:max_chars]
    out = np.zeros((max_chars, N_CLASSES), dtype=np.float32)
    out[:, BLANK] = 1.0
    for i, d in enumerate(digits):
        out[i] = make_argmax(normalised(char_dists[i]), d)
    if len(digits) < max_chars and end_dist is not None:
        out[len(digits)] = make_argmax(normalised(end_dist), BLANK)
    return "".join(chr(48 + d) for d in digits), out, truncated


def warn_truncated(n: int, total: int, max_chars: int, model: str) -> None:
    if n:
        warnings.warn(
            f"{model}: {n} of {total} decoded strings are longer than max_chars={max_chars} and were cut to it "
            f"(raise --set max_chars=...; runs blend only with runs of the same max_chars)",
            stacklevel=3,
        )

"""The target encoding: a digit string as one class per character position, 10 meaning blank.

``"19"`` -> ``[1, 9, 10, 10, 10, 10]`` with ``max_chars=6``. Decoding reads positions left to right and stops at
the first blank, so blanks only ever follow the last digit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.errors import UserError

BLANK = 10
N_CLASSES = 11


def encode(labels: Sequence[str], max_chars: int = 6) -> np.ndarray:
    """Digit strings -> int64 array (n, max_chars); a string longer than ``max_chars`` or not all digits is an
    error."""
    labels = [str(s) for s in labels]
    out = np.full((len(labels), max_chars), BLANK, dtype=np.int64)
    for i, text in enumerate(labels):
        if not text or not text.isdigit() or not text.isascii():
            raise UserError(f"label {text!r} (row {i}) is not a string of digits 0-9")
        if len(text) > max_chars:
            raise UserError(
                f"label {text!r} (row {i}) has {len(text)} characters but max_chars is {max_chars}; "
                f"raise it with --set max_chars={len(text)}"
            )
        out[i, : len(text)] = [ord(c) - 48 for c in text]
    return out


def decode(codes: np.ndarray) -> np.ndarray:
    """Class indices (n, max_chars) -> digit strings, stopping at the first blank (an empty string if the first
    position is blank)."""
    codes = np.asarray(codes)
    out = []
    for row in codes:
        blank = np.flatnonzero(row == BLANK)
        end = int(blank[0]) if len(blank) else len(row)
        out.append("".join(chr(48 + int(c)) for c in row[:end]))
    return np.array(out, dtype=object).astype(str)


def decode_scores(scores: np.ndarray) -> np.ndarray:
    """Logits or probabilities (n, max_chars, 11) -> digit strings: argmax per position, then :func:`decode`. The
    first position never decodes to blank (its best digit is taken): every true label has a digit there, so an
    empty answer could only be wrong."""
    scores = np.asarray(scores)
    codes = scores.argmax(-1)
    if scores.shape[0] and scores.shape[1]:
        codes[:, 0] = scores[:, 0, :BLANK].argmax(-1)
    return decode(codes)


def n_digits(labels: Sequence[str]) -> np.ndarray:
    """The number of characters of each label, as strings: what folds are stratified on."""
    return np.array([str(len(str(s))) for s in labels])

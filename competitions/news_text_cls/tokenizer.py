"""The vocabulary of the anonymised ids, as a ``tokenizers`` WordLevel tokenizer wrapped for transformers.

The contest's text is already tokenised (space-separated integer ids), so the tokenizer is a word-level lookup: the
special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]`` take token ids 0..4, then every corpus id seen at least
``min_count`` times, most frequent first. It is saved beside the model (``save_pretrained``) so that fine-tuning
reads exactly the vocabulary the model was pretrained with.

Encoding a whole corpus through the Rust tokenizer is exact but needlessly slow for 10^8 ids; :func:`id_lookup`
turns the vocabulary into a numpy table (corpus id -> token id) and :func:`encode` applies it to a flat id array.
Both give the same ids as the tokenizer (a test checks it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from common.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))
N_SPECIAL = len(SPECIAL_TOKENS)


def count_ids(*flat_arrays: np.ndarray) -> np.ndarray:
    """Occurrences of each corpus id over the given flat id arrays (index = id)."""
    arrays = [np.asarray(a) for a in flat_arrays if len(a)]
    size = max((int(a.max()) + 1 for a in arrays), default=0)
    counts = np.zeros(size, dtype=np.int64)
    for flat in arrays:
        counts += np.bincount(flat, minlength=size)
    return counts


def vocab_from_counts(counts: np.ndarray, min_count: int = 1) -> dict[str, int]:
    """Special tokens first, then each id with ``counts >= min_count``, most frequent first (ties by id)."""
    if min_count < 1:
        raise UserError(f"min_count must be >= 1, got {min_count}")
    kept = np.flatnonzero(np.asarray(counts) >= min_count)
    order = kept[np.lexsort((kept, -np.asarray(counts)[kept]))]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({str(int(corpus_id)): N_SPECIAL + i for i, corpus_id in enumerate(order)})
    return vocab


def make_tokenizer(vocab: dict[str, int], model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """A WordLevel + whitespace tokenizer over ``vocab`` that adds ``[CLS] ... [SEP]``."""
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def build_tokenizer(*flat_arrays: np.ndarray, min_count: int = 1, model_max_length: int = 512):
    """The tokenizer of a corpus given as flat id arrays (e.g. ``Corpus.flat`` of train and test)."""
    return make_tokenizer(vocab_from_counts(count_ids(*flat_arrays), min_count), model_max_length)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by :func:`build_tokenizer` (``UserError`` when ``path`` holds none)."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise UserError(f"{path}: no tokenizer.json (expected a directory written by the pretrain verb)")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    vocab = tokenizer.get_vocab()
    wrong = [t for i, t in enumerate(SPECIAL_TOKENS) if vocab.get(t) != i]
    if wrong:
        raise UserError(
            f"{path}/tokenizer.json: special tokens {wrong} missing or not at ids 0..{N_SPECIAL - 1}"
        )
    return tokenizer


def id_lookup(tokenizer: PreTrainedTokenizerFast) -> np.ndarray:
    """A table ``lookup[corpus_id] -> token_id`` covering every corpus id in the vocabulary."""
    pairs = [(int(tok), idx) for tok, idx in tokenizer.get_vocab().items() if tok.isdigit()]
    size = max((c for c, _ in pairs), default=-1) + 1
    lookup = np.full(size, UNK_ID, dtype=np.int32)
    if pairs:
        corpus_ids, token_ids = np.array(pairs, dtype=np.int64).T
        lookup[corpus_ids] = token_ids
    return lookup


def encode(flat: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """Token ids (``int32``) of a flat array of corpus ids; ids outside the vocabulary become ``[UNK]``."""
    flat = np.asarray(flat)
    out = np.full(len(flat), UNK_ID, dtype=np.int32)
    inside = flat < len(lookup)
    out[inside] = lookup[flat[inside]]
    return out

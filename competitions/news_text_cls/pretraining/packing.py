"""Documents packed into full-length blocks, and the loaders that feed them to MLM pretraining.

Every document's token ids are followed by ``[SEP]`` and all documents are concatenated into one stream, which is
cut into rows of ``block_len - 2`` ids; a block is ``[CLS] row [SEP]``. The last row is completed with the stream's
first ids (wrap-around), so every block is full: no padding, no attention mask, no compute spent on ``[PAD]``, and
no id of the corpus is lost.

Training batches come from :class:`BlockBatchSampler`, an endless stream of per-pass permutations of the blocks cut
into "epochs" of ``batches_per_epoch`` batches (pretraining runs one epoch of all its steps). The order of epoch
``e`` depends only on ``(seed, e)``, and the sampler can start an epoch ``n`` batches in (``skip_next``), so a run
resumed after a kill sees the same batches as one never stopped without re-masking the ones already trained. Masking is dynamic (:class:`transformers.DataCollatorForLanguageModeling`, drawn per batch); the held-out
blocks are masked once with a fixed seed, so their loss and accuracy are comparable between checkpoints.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import DataCollatorForLanguageModeling

from competitions.news_text_cls.tokenizer import CLS_ID, N_SPECIAL, SEP_ID


def doc_stream(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One store's token ids with ``[SEP]`` after every non-empty document (``tokens`` holds them end to end)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if int(lengths.sum()) != len(tokens):
        raise ValueError(f"lengths sum to {int(lengths.sum())} but there are {len(tokens)} tokens")
    ends = np.cumsum(lengths)[lengths > 0]
    return np.insert(np.asarray(tokens), ends, SEP_ID)


def pack_blocks(streams: list[np.ndarray], block_len: int) -> np.ndarray:
    """Rows of ``block_len - 2`` ids cut from the concatenated streams (the last row wraps around)."""
    if block_len < 3:
        raise ValueError(f"block_len must be >= 3, got {block_len}")
    stream = np.concatenate([np.asarray(s) for s in streams]) if streams else np.zeros(0, np.int32)
    if len(stream) == 0:
        raise ValueError("nothing to pack: the corpus has no ids")
    width = block_len - 2
    n_blocks = math.ceil(len(stream) / width)
    dtype = np.uint16 if stream.max() < 2**16 else np.int32
    return np.resize(stream.astype(dtype, copy=False), n_blocks * width).reshape(n_blocks, width)


def with_specials(rows: np.ndarray) -> torch.Tensor:
    """``[CLS] row [SEP]`` for each row, as ``int64`` input ids."""
    ids = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    n = ids.shape[0]
    cls = torch.full((n, 1), CLS_ID, dtype=torch.int64)
    sep = torch.full((n, 1), SEP_ID, dtype=torch.int64)
    return torch.cat([cls, ids, sep], dim=1)


def mask_batch(collator: DataCollatorForLanguageModeling, input_ids: torch.Tensor) -> dict:
    """Apply the collator's MLM masking to stacked full-length blocks (no padding step needed)."""
    special = input_ids < N_SPECIAL
    inputs, labels = collator.torch_mask_tokens(input_ids.clone(), special_tokens_mask=special)
    return {"input_ids": inputs, "labels": labels}


class MaskedBlocks(Dataset):
    """``dataset[index_array]`` is one masked batch of blocks (use with ``batch_size=None``)."""

    def __init__(self, rows: np.ndarray, collator: DataCollatorForLanguageModeling) -> None:
        self.rows = rows
        self.collator = collator

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index) -> dict:
        return mask_batch(self.collator, with_specials(self.rows[np.asarray(index)]))


class BlockBatchSampler(Sampler):
    """Batches of block indices: epoch ``e`` is batches ``e*B .. (e+1)*B - 1`` of an endless stream made of one
    permutation of all blocks per pass, each permutation drawn from ``(seed, pass)``."""

    def __init__(self, n_blocks: int, batch_size: int, batches_per_epoch: int, seed: int = 0) -> None:
        if n_blocks < 1 or batch_size < 1 or batches_per_epoch < 1:
            raise ValueError("n_blocks, batch_size and batches_per_epoch must be >= 1")
        self.n_blocks = n_blocks
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_next(self, n_batches: int) -> bool:
        """The next iteration starts ``n_batches`` into the epoch (a resumed run)."""
        self._skip = int(n_batches)
        return True

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _positions(self, begin: int, end: int) -> np.ndarray:
        first, last = begin // self.n_blocks, (end - 1) // self.n_blocks
        perms = [
            np.random.default_rng([self.seed, p]).permutation(self.n_blocks) for p in range(first, last + 1)
        ]
        offset = first * self.n_blocks
        return np.concatenate(perms)[begin - offset : end - offset]

    def __iter__(self):
        per_epoch = self.batches_per_epoch * self.batch_size
        skip, self._skip = self._skip, 0
        order = self._positions(self.epoch * per_epoch + skip * self.batch_size, (self.epoch + 1) * per_epoch)
        yield from order.reshape(-1, self.batch_size)


def split_blocks(n_blocks: int, n_eval: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and held-out blocks (at most a tenth of the blocks are held out)."""
    n_eval = min(n_eval, n_blocks // 10)
    perm = np.random.default_rng([seed, 2**20]).permutation(n_blocks)
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


def train_loader(
    rows: np.ndarray,
    collator: DataCollatorForLanguageModeling,
    batch_size: int,
    batches_per_epoch: int,
    seed: int,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    sampler = BlockBatchSampler(len(rows), batch_size, batches_per_epoch, seed)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        MaskedBlocks(rows, collator),
        batch_size=None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=generator,
        prefetch_factor=4 if num_workers else None,
    )


def eval_loader(
    rows: np.ndarray, collator: DataCollatorForLanguageModeling, batch_size: int, seed: int
) -> DataLoader:
    """The held-out blocks, masked once with a fixed seed, in a fixed order."""
    saved = collator.generator
    collator.generator = torch.Generator().manual_seed(seed)
    try:
        batches = [
            mask_batch(collator, with_specials(rows[i : i + batch_size]))
            for i in range(0, len(rows), batch_size)
        ]
    finally:
        collator.generator = saved
    return DataLoader(batches, batch_size=None)

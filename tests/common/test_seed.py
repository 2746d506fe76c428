import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.seed import seed_everything, worker_init_fn


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_same_seed_same_numbers():
    seed_everything(123)
    first = _draw()
    seed_everything(123)
    assert _draw() == first
    seed_everything(124)
    assert _draw() != first


def test_returned_generator_is_seeded():
    a = torch.randperm(50, generator=seed_everything(7))
    b = torch.randperm(50, generator=seed_everything(7))
    c = torch.randperm(50, generator=seed_everything(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_deterministic_is_a_flag():
    seed_everything(1, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    seed_everything(1)
    assert not torch.are_deterministic_algorithms_enabled()


class _NumpyNoise(Dataset):
    """Draws from numpy's global RNG inside the worker: only seeded workers make this reproducible."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return np.random.rand() + random.random()


def _worker_draws(seed: int) -> list[float]:
    gen = seed_everything(seed)
    loader = DataLoader(
        _NumpyNoise(), batch_size=2, num_workers=2, generator=gen, worker_init_fn=worker_init_fn
    )
    return torch.cat(list(loader)).tolist()


def test_dataloader_workers_are_seeded():
    a, b, c = _worker_draws(5), _worker_draws(5), _worker_draws(6)
    assert a == b
    assert a != c
    assert len(set(a)) == len(a)  # the two workers do not repeat each other's numbers

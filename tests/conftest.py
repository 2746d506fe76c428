"""Shared pytest set-up: few torch threads (the CI machine has 2 cores) and no progress bars."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True, scope="session")
def _few_torch_threads():
    import torch

    torch.set_num_threads(1)
    yield

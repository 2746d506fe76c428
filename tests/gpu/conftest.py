"""The GPU tier: ``pytest -m gpu`` (``make test-gpu``) collects these everywhere and skips them cleanly without
CUDA; on a GPU machine they run the paths only a GPU exercises (bf16 autocast, channels_last + compile, NCCL DDP,
CUDA loader workers) on generated data, and every benchmark at a small size."""

from __future__ import annotations

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
N_GPUS = torch.cuda.device_count() if HAS_CUDA else 0


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if not HAS_CUDA:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (the gpu tier)"))

"""Tiny generated contest data shared by the street tests (rendered once per session, copied when mutated)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from competitions.street_char_rec.synth import write_dataset

#: model params small enough for a CPU test: 16x32 images, a narrow CNN, one epoch
TINY = {"img_h": 16, "img_w": 32, "epochs": 1, "batch_size": 16, "num_workers": 0, "quiet": True}
TINY_BY_MODEL = {
    "cnn": {"width": 8},
    "resnet": {"backbone": "resnet18"},
    # the small CNN and the residual BiLSTM, 8 CTC frames on a 32-pixel-wide image (1-D convolutions: test_crnn,
    # test_decoders_cli; the default resnet18 at stride 16: test_crnn)
    "crnn": {"backbone": "small", "width": 8, "seq": "lstm", "hidden": 16, "col_stride": 4},
    "detector": {"width": 8, "fpn_channels": 32, "head_convs": 1, "levels": 2},
}


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def street_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("street") / "data"
    write_dataset(out, n_train=40, n_val=16, n_test=12, seed=1, workers=1)
    return out


@pytest.fixture
def data_copy(street_data, tmp_path) -> Path:
    """A private copy of the tiny data set that a test may break."""
    out = tmp_path / "data"
    shutil.copytree(street_data, out, ignore=shutil.ignore_patterns(".cache"))
    return out

from __future__ import annotations

import pytest
import torch

from competitions.news_text_cls.synth import write_demo


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """A small 14-class demo set (train_set.csv, test_a.csv) shared by the tests that only read it."""
    return write_demo(tmp_path_factory.mktemp("news_demo"), n_train=420, n_test=60, seed=3)


@pytest.fixture(scope="session")
def demo2_dir(tmp_path_factory):
    """A 2-class demo set."""
    return write_demo(tmp_path_factory.mktemp("news_demo2"), n_train=120, n_test=20, seed=4, n_classes=2)


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path

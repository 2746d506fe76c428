"""Shared pytest set-up: few torch threads (the CI machine has 2 cores), no progress bars, and a guard that no test
writes into the repository's own ``submissions/`` (a user's archive and ledger)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
REPO_SUBMISSIONS = Path(__file__).resolve().parents[1] / "submissions"


def _listing() -> dict[str, int]:
    return (
        {str(p): p.stat().st_mtime_ns for p in REPO_SUBMISSIONS.rglob("*")}
        if REPO_SUBMISSIONS.is_dir()
        else {}
    )


@pytest.fixture(autouse=True, scope="session")
def _few_torch_threads():
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _repo_submissions_untouched():
    before = _listing()
    yield
    assert _listing() == before, "a test wrote into the repository's submissions/: pass --submissions-dir"

"""`make test-gpu` (`pytest -m gpu`) collects the GPU tier on every machine; without CUDA every test of it is skipped
with its reason, none fails and none is silently left out."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _pytest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def test_the_gpu_marker_collects_the_gpu_tier():
    out = _pytest("-m", "gpu", "--collect-only", "-q", "tests/gpu")
    collected = [line for line in out.stdout.splitlines() if line.startswith("tests/gpu/")]
    assert len(collected) >= 10, out.stdout[-2000:]
    assert any("test_every_bench_prints_json_lines" in line for line in collected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the tier for real")
def test_without_cuda_the_gpu_tier_skips_cleanly():
    out = _pytest("-m", "gpu", "-q", "-rs", "tests/gpu")
    assert out.returncode == 0, out.stdout[-3000:]
    summary = out.stdout.strip().splitlines()[-1]
    assert "skipped" in summary and "passed" not in summary and "failed" not in summary, summary
    assert "needs a CUDA GPU" in out.stdout

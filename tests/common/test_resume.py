"""Resume after a crash: kill between epochs, rerun with the same work_dir, training continues from the last
checkpoint and ends with exactly the weights of an uninterrupted run (CPU, fixed seed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.common import toy  # noqa: F401  (registers toy_mlp)
from tests.common.conftest import run_python

EPOCHS = 4


def _xy(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.normal(0, 1.5, (n, 4)) + y[:, None]).astype(np.float32)
    return X, y


def fit_toy(work_dir, callbacks=(), **params):
    """toy_mlp: shuffled batches, dropout, an inner holdout, best-checkpoint selection: every RNG matters."""
    from common.registry import create_model

    params = {"epochs": EPOCHS, "batch_size": 16, "quiet": True, "device": "cpu", "seed": 3, **params}
    model = create_model("toy_mlp", **params)
    X, y = _xy()
    return model.fit(X, y, work_dir=work_dir, callbacks=callbacks)


class Crash(Exception):
    pass


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"ema_decay": 0.8, "valid_size": 0.0},
        {"scheduler": "linear", "warmup_ratio": 0.3, "grad_accum": 2},
        {"num_workers": 1},
    ],
    ids=["holdout", "ema-no-holdout", "warmup-accum", "loader-worker"],
)
def test_resume_after_crash_equals_uninterrupted(tmp_path, params):
    full = fit_toy(tmp_path / "full", **params)

    def crash(epoch, record):
        if epoch == 1:
            raise Crash

    with pytest.raises(Crash):
        fit_toy(tmp_path / "crashed", [crash], **params)
    state = torch.load(tmp_path / "crashed" / "last.pt", weights_only=True)["state"]
    assert state["epoch"] == 2

    ran = []
    resumed = fit_toy(tmp_path / "crashed", [lambda e, r: ran.append(e)], **params)
    assert ran == [2, 3]  # continued, did not restart at epoch 0
    _assert_same_weights(full.module_, resumed.module_)
    assert [r["train_loss"] for r in resumed.history_] == [r["train_loss"] for r in full.history_]
    log = [
        json.loads(line)["epoch"] for line in (tmp_path / "crashed" / "log.jsonl").read_text().splitlines()
    ]
    assert log == [0, 1, 2, 3]


def test_rerun_of_a_finished_fit_trains_nothing(tmp_path):
    first = fit_toy(tmp_path)
    ran = []
    again = fit_toy(tmp_path, [lambda e, r: ran.append(e)])
    assert ran == []
    _assert_same_weights(first.module_, again.module_)


def test_resume_after_sigkill_between_epochs(tmp_path):
    work, out_crash = tmp_path / "work", tmp_path / "crash"
    args = ["-m", "tests.common.resume_worker", "--work-dir", str(work), "--out"]
    killed = run_python([*args, str(out_crash), "--kill-after", "1"], cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (out_crash / "weights.pt").exists()
    resumed = run_python([*args, str(out_crash)], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (out_crash / "epochs.txt").read_text().split() == ["0", "1", "2", "3"]  # 0, 1 killed; 2, 3 resumed

    full = fit_toy(tmp_path / "uninterrupted")
    weights = torch.load(out_crash / "weights.pt", weights_only=True)
    for k, v in full.module_.state_dict().items():
        assert torch.equal(v, weights[k]), k
